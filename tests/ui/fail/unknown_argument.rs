use hot_runtime::hot;

#[hot(foo)]
fn tick(x: u32) -> u32 {
    x
}

#[hot(Send)]
async fn also_wrong() {}

#[hot(?Send, ?Send)]
async fn twice() {}

fn main() {}
