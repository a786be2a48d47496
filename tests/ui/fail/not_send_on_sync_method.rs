use hot_runtime::hot;

struct S;

impl S {
    #[hot(?Send)]
    fn get(&self) -> u32 {
        1
    }
}

fn main() {}
