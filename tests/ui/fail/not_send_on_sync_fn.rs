use hot_runtime::hot;

#[hot(?Send)]
fn tick(x: u32) -> u32 {
    x
}

fn main() {}
