use hot_runtime::hot;

#[hot]
mod game {
    pub fn tick() {}
}

fn main() {}
