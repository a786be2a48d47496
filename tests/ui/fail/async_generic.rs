use hot_runtime::hot;

#[hot]
async fn fetch<T: Default>() -> T {
    T::default()
}

#[hot]
async fn log(x: impl std::fmt::Display) {
    println!("{x}");
}

fn main() {}
