//! A fixed-timestep Game of Life. `update` and `render` are hot; patches are taken only at the
//! frame boundary (`ApplyMode::Manual` + `apply_pending`), so a frame never mixes old and new code.
//! Run `cargo hot run -p sim` and edit `render` (e.g. the cell characters) or `update` (the rules).

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

fn main() {
    hot_runtime::set_apply_mode(hot_runtime::ApplyMode::Manual);
    let frames: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(u64::MAX);
    let step = Duration::from_millis(50);
    let mut world = World::new();
    let mut next = Instant::now();
    for _ in 0..frames {
        // The frame boundary: the only place a patch may land.
        let applied = hot_runtime::apply_pending();
        if applied > 0 {
            println!(
                "[{}] applied {applied} patch(es) at frame boundary before gen {}",
                std::process::id(),
                world.generation
            );
        }
        update(&mut world);
        println!("[{}] {}", std::process::id(), render(&world));
        next += step;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}
