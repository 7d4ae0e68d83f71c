//! Wildcard destination names, as ActiveMQ has them: names are `.`-separated segments, `*`
//! stands for one segment and `>` for the rest (any number of segments, none included, so
//! `a.>` matches `a`, `a.b` and `a.b.c`; anything after `>` is ignored).
//!
//! A [`Pattern`] tests one name; a [`PatternTrie`] holds many patterns and finds every one a
//! name matches by walking the name's segments once, whatever the number of patterns: the
//! index each shard keeps of its wildcard subscriptions, and what per-destination policies
//! (and later network and security rules) match against.

use std::collections::HashMap;

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Segment {
    Exact(Box<str>),
    /// `*`
    One,
    /// `>`
    Rest,
}

/// A wildcard pattern over the part of a destination name after its `/queue/` or `/topic/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    segments: Box<[Segment]>,
}

/// True when `name` (without its `/queue/` or `/topic/` prefix) has a `*` or `>` segment.
pub fn is_wildcard(name: &str) -> bool {
    name.split('.').any(|s| s == "*" || s == ">")
}

/// Whether `name` matches the wildcard `pattern` (both without prefix), without building a
/// [`Pattern`]: for config entries checked now and then.
pub fn matches(pattern: &str, name: &str) -> bool {
    let mut parts = name.split('.');
    for segment in pattern.split('.') {
        match segment {
            ">" => return true,
            "*" => {
                if parts.next().is_none() {
                    return false;
                }
            }
            exact => {
                if parts.next() != Some(exact) {
                    return false;
                }
            }
        }
    }
    parts.next().is_none()
}

impl Pattern {
    /// The pattern `name` spells; a name without wildcards is a pattern that matches itself.
    pub fn new(name: &str) -> Pattern {
        let mut segments = Vec::new();
        for s in name.split('.') {
            match s {
                "*" => segments.push(Segment::One),
                ">" => {
                    segments.push(Segment::Rest);
                    break;
                }
                exact => segments.push(Segment::Exact(exact.into())),
            }
        }
        Pattern {
            segments: segments.into_boxed_slice(),
        }
    }

    /// Whether `name` (without prefix) matches.
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = name.split('.');
        for segment in self.segments.iter() {
            match segment {
                Segment::Rest => return true,
                Segment::One => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Segment::Exact(e) => {
                    if parts.next() != Some(&**e) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }
}

/// Patterns with a value each, indexed by segment.
#[derive(Debug)]
pub struct PatternTrie<T> {
    root: Node<T>,
    len: usize,
}

#[derive(Debug)]
struct Node<T> {
    exact: HashMap<Box<str>, Node<T>>,
    one: Option<Box<Node<T>>>,
    /// Values of patterns that end here with `>`.
    rest: Vec<T>,
    /// Values of patterns that end here.
    here: Vec<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            exact: HashMap::new(),
            one: None,
            rest: Vec::new(),
            here: Vec::new(),
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.one.is_none() && self.rest.is_empty() && self.here.is_empty()
    }
}

impl<T> Default for PatternTrie<T> {
    fn default() -> Self {
        PatternTrie {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<T> PatternTrie<T> {
    /// How many values the trie holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `value` under `pattern`.
    pub fn insert(&mut self, pattern: &Pattern, value: T) {
        let mut node = &mut self.root;
        for segment in pattern.segments.iter() {
            match segment {
                Segment::Exact(e) => node = node.exact.entry(e.clone()).or_default(),
                Segment::One => node = node.one.get_or_insert_with(Default::default),
                Segment::Rest => {
                    node.rest.push(value);
                    self.len += 1;
                    return;
                }
            }
        }
        node.here.push(value);
        self.len += 1;
    }

    /// Removes the values under `pattern` for which `remove` is true, and the nodes left
    /// empty; returns how many went.
    pub fn remove(&mut self, pattern: &Pattern, mut remove: impl FnMut(&T) -> bool) -> usize {
        let removed = Self::remove_at(&mut self.root, &pattern.segments, &mut remove);
        self.len -= removed;
        removed
    }

    fn remove_at(
        node: &mut Node<T>,
        segments: &[Segment],
        remove: &mut impl FnMut(&T) -> bool,
    ) -> usize {
        let before;
        let Some((first, rest)) = segments.split_first() else {
            before = node.here.len();
            node.here.retain(|v| !remove(v));
            return before - node.here.len();
        };
        match first {
            Segment::Rest => {
                before = node.rest.len();
                node.rest.retain(|v| !remove(v));
                before - node.rest.len()
            }
            Segment::One => {
                let Some(child) = node.one.as_mut() else {
                    return 0;
                };
                let removed = Self::remove_at(child, rest, remove);
                if child.is_empty() {
                    node.one = None;
                }
                removed
            }
            Segment::Exact(e) => {
                let Some(child) = node.exact.get_mut(e) else {
                    return 0;
                };
                let removed = Self::remove_at(child, rest, remove);
                if child.is_empty() {
                    node.exact.remove(e);
                }
                removed
            }
        }
    }

    /// Calls `found` with every value whose pattern matches `name` (without prefix). A value
    /// inserted under two matching patterns is found twice.
    pub fn for_each_match<'a>(&'a self, name: &str, mut found: impl FnMut(&'a T)) {
        let segments: Vec<&str> = name.split('.').collect();
        Self::walk(&self.root, &segments, &mut found);
    }

    fn walk<'a>(node: &'a Node<T>, segments: &[&str], found: &mut impl FnMut(&'a T)) {
        node.rest.iter().for_each(&mut *found);
        let Some((first, rest)) = segments.split_first() else {
            node.here.iter().for_each(found);
            return;
        };
        if let Some(child) = node.exact.get(*first) {
            Self::walk(child, rest, found);
        }
        if let Some(child) = &node.one {
            Self::walk(child, rest, found);
        }
    }

    /// Every value, in no particular order.
    pub fn values(&self) -> Vec<&T> {
        let mut out = Vec::with_capacity(self.len);
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            out.extend(node.rest.iter().chain(node.here.iter()));
            stack.extend(node.exact.values());
            stack.extend(node.one.as_deref());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_is_one_segment_and_gt_is_the_rest() {
        let p = Pattern::new("a.*");
        assert!(p.matches("a.b"));
        assert!(!p.matches("a"));
        assert!(!p.matches("a.b.c"));
        assert!(!p.matches("b.c"));
        let p = Pattern::new("a.>");
        assert!(p.matches("a"), "> matches no segment too, as in ActiveMQ");
        assert!(p.matches("a.b"));
        assert!(p.matches("a.b.c"));
        assert!(!p.matches("ab"));
        assert!(!p.matches("b.a"));
        let p = Pattern::new("*.b.>");
        assert!(p.matches("x.b"));
        assert!(p.matches("x.b.y.z"));
        assert!(!p.matches("x.c.y"));
        assert!(Pattern::new(">").matches("anything.at.all"));
        assert!(Pattern::new("a.>.ignored").matches("a.b.c"));
        assert!(Pattern::new("plain").matches("plain"));
        assert!(!Pattern::new("plain").matches("plain.x"));
        assert!(
            Pattern::new("a..b").matches("a..b"),
            "empty segments are segments"
        );
    }

    #[test]
    fn wildcards_are_whole_segments() {
        assert!(is_wildcard("a.*"));
        assert!(is_wildcard("a.>"));
        assert!(is_wildcard(">"));
        assert!(!is_wildcard("a*"));
        assert!(!is_wildcard("a.b>"));
        assert!(!is_wildcard("a.b"));
        assert!(!Pattern::new("a*").matches("ab"), "a* is a literal name");
    }

    #[test]
    fn the_trie_finds_every_matching_pattern_and_only_those() {
        let patterns = ["a.*", "a.>", "a.b", "*.b", ">", "a.b.*", "x.y", "*.*.*"];
        let mut trie = PatternTrie::default();
        for (n, p) in patterns.iter().enumerate() {
            trie.insert(&Pattern::new(p), n);
        }
        assert_eq!(trie.len(), patterns.len());
        for name in ["a", "a.b", "a.b.c", "x.y", "q.b", "x.y.z", "a.c.d.e", ""] {
            let mut found = Vec::new();
            trie.for_each_match(name, |n| found.push(*n));
            found.sort();
            let expected: Vec<usize> = (0..patterns.len())
                .filter(|n| Pattern::new(patterns[*n]).matches(name))
                .collect();
            assert_eq!(found, expected, "{name}");
        }
    }

    #[test]
    fn removing_prunes_and_keeps_the_others() {
        let mut trie = PatternTrie::default();
        trie.insert(&Pattern::new("a.*.c"), 1);
        trie.insert(&Pattern::new("a.*.c"), 2);
        trie.insert(&Pattern::new("a.>"), 3);
        assert_eq!(trie.remove(&Pattern::new("a.*.c"), |v| *v == 1), 1);
        assert_eq!(trie.remove(&Pattern::new("a.*.c"), |v| *v == 1), 0);
        assert_eq!(trie.remove(&Pattern::new("q.*"), |_| true), 0);
        let mut found = Vec::new();
        trie.for_each_match("a.b.c", |v| found.push(*v));
        found.sort();
        assert_eq!(found, vec![2, 3]);
        assert_eq!(trie.remove(&Pattern::new("a.*.c"), |_| true), 1);
        assert_eq!(trie.remove(&Pattern::new("a.>"), |_| true), 1);
        assert!(trie.is_empty());
        assert!(trie.root.is_empty(), "empty nodes are pruned");
        assert!(trie.values().is_empty());
    }
}
