//! `#[hot(rewind)]` on the shapes a long-running loop takes: references (reborrowed for each
//! call), `Copy` values, methods, generics, destructuring, `-> !`.

use hot_runtime::hot;

struct Game {
    frame: u64,
}

#[hot]
fn step(g: &mut Game) -> bool {
    g.frame += 1;
    g.frame < 3
}

#[hot(rewind)]
fn run(game: &mut Game, speed: u32, name: &str) -> u64 {
    let _ = (speed, name);
    while step(game) {}
    game.frame
}

impl Game {
    #[hot(rewind)]
    fn run_for(&mut self, frames: u64) -> u64 {
        while self.frame < frames {
            self.frame += 1;
        }
        self.frame
    }

    #[hot(rewind)]
    fn peek(&self) -> u64 {
        self.frame
    }
}

#[hot(rewind)]
fn generic_loop<T: Copy + Into<u64>>(state: &mut Vec<u64>, x: T) -> usize {
    state.push(x.into());
    state.len()
}

#[hot(rewind)]
fn destructure((a, b): (u32, u32), Game { frame }: &Game) -> u64 {
    u64::from(a + b) + *frame
}

#[hot(rewind)]
fn forever(game: &mut Game) -> ! {
    loop {
        if !step(game) {
            std::process::exit(0);
        }
    }
}

fn main() {
    let mut g = Game { frame: 0 };
    assert_eq!(run(&mut g, 1, "x"), 3);
    assert_eq!(g.run_for(5), 5);
    assert_eq!(g.peek(), 5);
    assert_eq!(generic_loop(&mut vec![], 1u8), 1);
    assert_eq!(destructure((1, 2), &g), 8);
    let _never: fn(&mut Game) -> ! = forever;
}
