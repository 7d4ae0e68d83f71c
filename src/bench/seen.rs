//! Which messages a consumer group has seen, by producer and sequence number: the source of
//! the lost and duplicated counts. Sans-IO; one bit per sequence number.

use std::collections::HashMap;

/// Seen `(producer, seq)` pairs. A queue's consumers share one (a message redelivered to
/// another consumer is a duplicate); each topic subscriber has its own.
#[derive(Debug, Default)]
pub struct Seen {
    producers: HashMap<String, Vec<u64>>,
    unique: u64,
    received: u64,
}

impl Seen {
    /// Records one received message; returns true the first time this pair is seen.
    pub fn insert(&mut self, producer: &str, seq: u64) -> bool {
        self.received += 1;
        let bits = match self.producers.get_mut(producer) {
            Some(bits) => bits,
            None => self.producers.entry(producer.to_string()).or_default(),
        };
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if bits.len() <= word {
            bits.resize((word + 1).next_power_of_two(), 0);
        }
        let fresh = bits[word] & (1 << bit) == 0;
        bits[word] |= 1 << bit;
        if fresh {
            self.unique += 1;
        }
        fresh
    }

    /// Distinct messages seen.
    pub fn unique(&self) -> u64 {
        self.unique
    }

    /// Messages received, duplicates included.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Messages received more than once (each extra copy counts).
    pub fn duplicated(&self) -> u64 {
        self.received - self.unique
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_unique_and_duplicates_per_producer() {
        let mut s = Seen::default();
        assert!(s.insert("run-0", 0));
        assert!(s.insert("run-0", 1000));
        assert!(s.insert("run-1", 0));
        assert!(!s.insert("run-0", 0));
        assert!(!s.insert("run-0", 1000));
        assert!(s.insert("run-0", 63));
        assert!(s.insert("run-0", 64));
        assert_eq!(s.unique(), 5);
        assert_eq!(s.received(), 7);
        assert_eq!(s.duplicated(), 2);
    }
}
