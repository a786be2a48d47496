use hot_runtime::hot;

#[hot]
#[hot]
fn twice() {}

fn main() {}
