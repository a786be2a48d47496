//! A fixed-timestep Game of Life. `update` and `render` are hot; patches are taken only at the
//! frame boundary (`ApplyMode::Manual` + `apply_pending`), so a frame never mixes old and new code.
//! The game loop itself is `#[hot(rewind)]`: edit its body (the status line, the frame step) and
//! the running loop is left and re-entered with the new code at its next hot call, with the world
//! it was given.
//! Run `cargo hot run -p sim` and edit `render` (e.g. the cell characters), `update` (the rules)
//! or `run` (the loop).

use std::time::{Duration, Instant};

const W: usize = 32;
const H: usize = 12;

/// The world survives every patch.
struct World {
    cells: Vec<bool>,
    generation: u64,
}

impl World {
    fn new() -> World {
        // A glider and a blinker.
        let mut cells = vec![false; W * H];
        for (x, y) in [
            (1, 0),
            (2, 1),
            (0, 2),
            (1, 2),
            (2, 2),
            (10, 5),
            (11, 5),
            (12, 5),
        ] {
            cells[y * W + x] = true;
        }
        World {
            cells,
            generation: 0,
        }
    }

    fn alive_neighbours(&self, x: usize, y: usize) -> usize {
        let mut n = 0;
        for dy in [H - 1, 0, 1] {
            for dx in [W - 1, 0, 1] {
                if (dx, dy) != (0, 0) && self.cells[((y + dy) % H) * W + (x + dx) % W] {
                    n += 1;
                }
            }
        }
        n
    }
}

/// One simulation step.
#[hot_runtime::hot]
fn update(world: &mut World) {
    let mut next = vec![false; W * H];
    for y in 0..H {
        for x in 0..W {
            let n = world.alive_neighbours(x, y);
            let alive = world.cells[y * W + x];
            next[y * W + x] = matches!((alive, n), (true, 2) | (true, 3) | (false, 3));
        }
    }
    world.cells = next;
    world.generation += 1;
}

/// One frame of text.
#[hot_runtime::hot]
fn render(world: &World) -> String {
    let alive = world.cells.iter().filter(|c| **c).count();
    let mut s = format!("gen {} alive {alive}\n", world.generation);
    for row in world.cells.chunks(W) {
        s.extend(row.iter().map(|c| if *c { '#' } else { '.' }));
        s.push('\n');
    }
    s
}

/// The game loop. It never returns while the program runs, so a plain `#[hot]` would keep its
/// old body forever; with `rewind`, a patch of this body unwinds the running loop at its next hot
/// call (`update`) and calls `run` again, with the same `world`.
#[hot_runtime::hot(rewind)]
fn run(world: &mut World, frames: u64) {
    let step = Duration::from_millis(50);
    let mut next = Instant::now();
    while world.generation < frames {
        // The frame boundary: the only place a patch may land.
        let applied = hot_runtime::apply_pending();
        if applied > 0 {
            println!(
                "[{}] applied {applied} patch(es) at frame boundary before gen {}",
                std::process::id(),
                world.generation
            );
        }
        update(world);
        println!("[{}] loop=v1 {}", std::process::id(), render(world));
        next += step;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

fn main() {
    hot_runtime::set_apply_mode(hot_runtime::ApplyMode::Manual);
    let frames: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(u64::MAX);
    let mut world = World::new();
    run(&mut world, frames);
}
