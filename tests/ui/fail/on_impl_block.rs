use hot_runtime::hot;

struct Counter(u32);

#[hot]
impl Counter {
    fn get(&self) -> u32 {
        self.0
    }
}

fn main() {}
