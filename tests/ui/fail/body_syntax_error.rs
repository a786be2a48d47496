// A syntax error inside a #[hot] body is rustc's to report, once: #[hot] parses only the
// signature and passes the body on as tokens, so it adds no error of its own.
use hot_runtime::hot;

#[hot]
fn sync_fn(x: u32) -> u32 {
    let y = x +;
    y
}

#[hot]
async fn async_fn(x: u32) -> u32 {
    let = x;
    x
}

struct S;

impl S {
    #[hot]
    fn method(&self) -> u32 {
        match self { S => 1,, }
    }
}

fn main() {}
