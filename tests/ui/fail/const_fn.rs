use hot_runtime::hot;

#[hot]
const fn answer() -> u32 {
    42
}

fn main() {}
