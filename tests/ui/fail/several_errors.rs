// All problems of one signature are reported at once, each on its own tokens.
use hot_runtime::hot;

#[hot]
const fn f<T, const N: usize>(x: impl Copy) -> impl Copy {
    x
}

fn main() {}
