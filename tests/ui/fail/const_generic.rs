use hot_runtime::hot;

#[hot]
fn zeros<const N: usize>() -> [u8; N] {
    [0; N]
}

fn main() {}
