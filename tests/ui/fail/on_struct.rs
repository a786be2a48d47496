use hot_runtime::hot;

#[hot]
struct Config {
    verbose: bool,
}

fn main() {}
