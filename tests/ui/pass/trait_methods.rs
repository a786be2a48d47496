// Trait-impl methods, including a type whose inherent method has the same name as the trait
// method (the expansion must not call `Self::describe`, which would pick the inherent one).
#![deny(warnings)]

use hot_runtime::hot;

trait Shape {
    fn area(&self) -> f64;
    fn describe(&self) -> String;
    fn scaled(&self, k: f64) -> Self
    where
        Self: Sized;
    fn unit() -> Self
    where
        Self: Sized;
}

#[derive(Debug, PartialEq)]
struct Square(f64);

impl Square {
    // Same name as the trait method, different body.
    fn describe(&self) -> String {
        "inherent".to_string()
    }
}

impl Shape for Square {
    #[hot]
    fn area(&self) -> f64 {
        self.0 * self.0
    }

    #[hot]
    fn describe(&self) -> String {
        format!("square {}", self.0)
    }

    #[hot]
    fn scaled(&self, k: f64) -> Self {
        Square(self.0 * k)
    }

    #[hot]
    fn unit() -> Self {
        Square(1.0)
    }
}

struct Circle {
    r: f64,
}

impl Shape for Circle {
    #[hot]
    fn area(&self) -> f64 {
        3.0 * self.r * self.r
    }

    #[hot]
    fn describe(&self) -> String {
        format!("circle {}", self.r)
    }

    #[hot]
    fn scaled(&self, k: f64) -> Circle {
        Circle { r: self.r * k }
    }

    #[hot]
    fn unit() -> Circle {
        Circle { r: 1.0 }
    }
}

// A trait with an associated type and a generic-free default method.
struct Countdown(u32);

impl Iterator for Countdown {
    type Item = u32;

    #[hot]
    fn next(&mut self) -> Option<Self::Item> {
        if self.0 == 0 {
            None
        } else {
            self.0 -= 1;
            Some(self.0)
        }
    }
}

impl std::fmt::Display for Square {
    #[hot]
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}]", self.0)
    }
}

trait Named {
    fn name(&self, prefix: &str) -> String;
}

impl Named for Circle {
    #[hot]
    fn name(&self, prefix: &str) -> String {
        format!("{prefix}circle")
    }
}

fn total_area(shapes: &[&dyn Shape]) -> f64 {
    shapes.iter().map(|s| s.area()).sum()
}

fn main() {
    let s = Square(2.0);
    assert_eq!(s.area(), 4.0);
    // Method-call syntax picks the inherent method; the trait method must still run its own body.
    assert_eq!(s.describe(), "inherent");
    assert_eq!(Shape::describe(&s), "square 2");
    assert_eq!(<Square as Shape>::describe(&s), "square 2");
    assert_eq!(s.scaled(3.0), Square(6.0));
    assert_eq!(<Square as Shape>::unit(), Square(1.0));
    let c = Circle { r: 1.0 };
    assert_eq!(c.describe(), "circle 1");
    assert_eq!(c.scaled(2.0).area(), 12.0);
    assert_eq!(Circle::unit().r, 1.0);
    assert_eq!(total_area(&[&s, &c]), 7.0);
    assert_eq!(Countdown(3).collect::<Vec<_>>(), vec![2, 1, 0]);
    assert_eq!(s.to_string(), "[2]");
    assert_eq!(c.name("a "), "a circle");
}
