use hot_runtime::hot;

#[hot]
fn show(x: impl std::fmt::Display) -> String {
    x.to_string()
}

fn main() {}
