// Inherent methods: every receiver form, `Self` in arguments and return, associated fns,
// methods borrowing from `self`, impls with lifetime parameters.
#![deny(warnings)]

use hot_runtime::hot;

#[derive(Debug, Clone, PartialEq)]
struct Counter {
    n: u32,
    name: String,
}

impl Counter {
    #[hot]
    fn new(name: &str) -> Self {
        Counter { n: 0, name: name.to_string() }
    }

    #[hot]
    pub fn with_count(n: u32) -> Counter {
        Counter { n, name: String::new() }
    }

    #[hot]
    fn get(&self) -> u32 {
        self.n
    }

    #[hot]
    fn bump(&mut self, by: u32) -> &mut Self {
        self.n += by;
        self
    }

    #[hot]
    fn into_name(self) -> String {
        self.name
    }

    #[hot]
    fn renamed(mut self, name: &str) -> Self {
        self.name = name.to_string();
        self
    }

    #[hot]
    fn boxed(self: Box<Self>) -> u32 {
        self.n
    }

    #[hot]
    fn name(&self) -> &str {
        &self.name
    }

    #[hot]
    fn name_or<'a>(&'a self, fallback: &'a str) -> &'a str {
        if self.name.is_empty() { fallback } else { &self.name }
    }

    #[hot]
    fn lookup(&self, key: &str) -> &u32 {
        let _ = key;
        &self.n
    }

    #[hot]
    fn same(&self, other: &Self) -> bool {
        self == other
    }

    #[hot]
    fn merge(self, other: Self) -> Self {
        Counter { n: self.n + other.n, name: self.name + &other.name }
    }

    #[hot]
    fn uses_self_path(&self) -> u32 {
        Self::helper(self.n)
    }

    fn helper(x: u32) -> u32 {
        x * 100
    }

    #[hot]
    fn nested_closure(&self) -> u32 {
        let add = |x: u32| x + self.n;
        add(1)
    }
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    #[hot]
    fn new(input: &'a str) -> Parser<'a> {
        Parser { input, pos: 0 }
    }

    #[hot]
    fn next_word(&mut self) -> Option<&'a str> {
        let rest = &self.input[self.pos..];
        let rest_trimmed = rest.trim_start();
        if rest_trimmed.is_empty() {
            return None;
        }
        let start = self.pos + (rest.len() - rest_trimmed.len());
        let len = rest_trimmed.find(' ').unwrap_or(rest_trimmed.len());
        self.pos = start + len;
        Some(&self.input[start..start + len])
    }
}

fn main() {
    let mut c = Counter::new("c");
    assert_eq!(c.get(), 0);
    c.bump(2).bump(3);
    assert_eq!(c.get(), 5);
    assert_eq!(c.name(), "c");
    assert_eq!(c.name_or("fallback"), "c");
    assert_eq!(Counter::with_count(1).name_or("fallback"), "fallback");
    assert_eq!(*c.lookup("k"), 5);
    assert!(c.same(&c.clone()));
    assert_eq!(c.uses_self_path(), 500);
    assert_eq!(c.nested_closure(), 6);
    let d = c.clone().renamed("d");
    assert_eq!(d.name(), "d");
    let m = c.clone().merge(d);
    assert_eq!(m.get(), 10);
    assert_eq!(m.into_name(), "cd");
    assert_eq!(Box::new(Counter::with_count(4)).boxed(), 4);
    assert_eq!(c.into_name(), "c");

    let mut p = Parser::new("  hot  patching rust ");
    assert_eq!(p.next_word(), Some("hot"));
    assert_eq!(p.next_word(), Some("patching"));
    assert_eq!(p.next_word(), Some("rust"));
    assert_eq!(p.next_word(), None);
}
