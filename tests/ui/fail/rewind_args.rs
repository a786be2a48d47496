// `#[hot(rewind)]` calls the fn again with the same arguments: each must be a reference or Copy.
use hot_runtime::hot;

#[hot(rewind)]
fn serve(name: String, port: u16, queue: Vec<u8>) -> usize {
    name.len() + usize::from(port) + queue.len()
}

#[hot(rewind)]
async fn tick(n: &u32) -> u32 {
    *n
}

fn main() {}
