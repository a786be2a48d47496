use hot_runtime::hot;

#[hot]
static SPEED: f32 = 1.5;

fn main() {}
