use hot_runtime::hot;

trait Shape {
    #[hot]
    fn area(&self) -> f64;
}

fn main() {}
