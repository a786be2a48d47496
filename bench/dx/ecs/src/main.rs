//! tests/fixtures/ecs for bench/vs_dx.py, the same program for both tools: a Bevy-shaped app
//! (systems over Query/Res/ResMut/Commands/Local, a plugin's build, an observer). The edit is in
//! the `report` system. Under `cargo hot run`, `#[hot]` patches it (Bevy's systems then call it
//! through `subsecond`, which is a plain call with no dx connected); under `dx serve
//! --hotpatch`, Bevy's `hotpatching` feature does (`#[hot]` is then the fn as written), as in a
//! Bevy app with `bevy/hotpatching`.
use bevy_app::{App, Plugin, Startup, Update};
use bevy_ecs::prelude::*;

#[derive(Component)]
struct Pos(i64);

#[derive(Component)]
struct Vel(i64);

#[derive(Resource, Default)]
struct Score(u64);

#[derive(Event)]
struct Scored(u64);

#[derive(Resource, Default)]
struct Cheers(u64);

/// Entities per component, counted by a generic system (one instantiation per component).
#[derive(Resource, Default)]
struct Tally(std::collections::BTreeMap<&'static str, u64>);

fn setup(mut commands: Commands) {
    commands.spawn((Pos(0), Vel(1)));
    commands.spawn((Pos(100), Vel(-1)));
}

#[hot_runtime::hot]
fn movement(mut q: Query<(&mut Pos, &Vel)>) {
    for (mut p, v) in &mut q {
        p.0 += v.0;
    }
}

#[hot_runtime::hot]
fn scoring(q: Query<&Pos>, mut score: ResMut<Score>, mut commands: Commands) {
    let sum: i64 = q.iter().map(|p| p.0).sum();
    if sum % 10 == 0 {
        score.0 += 1;
        commands.trigger(Scored(score.0));
    }
}

#[hot_runtime::hot]
fn cheer(ev: On<Scored>, mut cheers: ResMut<Cheers>) {
    cheers.0 += ev.event().0.min(1);
}

#[hot_runtime::hot]
fn tally<T: Component>(q: Query<Entity, With<T>>, mut tally: ResMut<Tally>) {
    let name = std::any::type_name::<T>().rsplit("::").next().unwrap_or("?");
    tally.0.insert(name, q.iter().count() as u64);
}

#[hot_runtime::hot]
fn report(
    score: Res<Score>,
    cheers: Res<Cheers>,
    tally: Res<Tally>,
    mut frames: Local<u64>,
    q: Query<&Pos>,
) {
    *frames += 1;
    let first = q.iter().map(|p| p.0).max().unwrap_or(0);
    let tally: Vec<String> = tally.0.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    println!(
        "[{}] frame={} score={} cheers={} max={first} tally={} mood=calm",
        std::process::id(),
        *frames,
        score.0,
        cheers.0,
        tally.join(",")
    );
}

struct GamePlugin;

impl Plugin for GamePlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<Score>()
            .init_resource::<Cheers>()
            .init_resource::<Tally>()
            .add_systems(Startup, setup)
            .add_systems(
                Update,
                (movement, scoring, tally::<Pos>, tally::<Vel>, report).chain(),
            )
            .add_observer(cheer);
    }
}

fn main() {
    let mut app = App::new();
    app.add_plugins((bevy_app::hotpatch::HotPatchPlugin, GamePlugin));
    loop {
        app.update();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
