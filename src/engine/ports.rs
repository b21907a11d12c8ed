//! The RTP port pool: even ports from the configured range, handed out round-robin so a port
//! just released is not reused at once (late packets from the old call).

use std::collections::HashSet;

#[derive(Debug)]
pub struct PortPool {
    min: u16,
    max: u16,
    next: u16,
    in_use: HashSet<u16>,
}

impl PortPool {
    /// Even ports in `min..=max` (RTP on even, RTCP would be the odd one above).
    pub fn new(min: u16, max: u16, start_offset: u16) -> PortPool {
        let min = min + (min % 2);
        let span = max.saturating_sub(min) / 2 + 1;
        let next = min + (start_offset % span.max(1)) * 2;
        PortPool {
            min,
            max,
            next,
            in_use: HashSet::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        (self.max.saturating_sub(self.min) / 2 + 1) as usize
    }

    pub fn allocate(&mut self) -> Option<u16> {
        if self.in_use.len() >= self.capacity() {
            return None;
        }
        for _ in 0..self.capacity() {
            let port = self.next;
            self.next = if self.next.saturating_add(2) > self.max || self.next >= u16::MAX - 1 {
                self.min
            } else {
                self.next + 2
            };
            if self.in_use.insert(port) {
                return Some(port);
            }
        }
        None
    }

    pub fn release(&mut self, port: u16) {
        self.in_use.remove(&port);
    }

    pub fn in_use(&self) -> usize {
        self.in_use.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hands_out_even_ports_round_robin_until_exhausted() {
        let mut p = PortPool::new(20001, 20006, 0);
        assert_eq!(p.capacity(), 3);
        assert_eq!(p.allocate(), Some(20002));
        assert_eq!(p.allocate(), Some(20004));
        assert_eq!(p.allocate(), Some(20006));
        assert_eq!(p.allocate(), None);
        p.release(20004);
        assert_eq!(p.allocate(), Some(20004));
    }
}
