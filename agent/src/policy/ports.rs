//! Port ranges as longest-prefix-match blocks: `[lo, hi]` becomes the fewest aligned
//! power-of-two blocks that cover it exactly, as an LPM trie keyed on the port can hold.

/// A block of ports: the `bits` leading bits of `port` are fixed, the rest are free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortBlock {
    pub port: u16,
    pub bits: u8,
}

impl PortBlock {
    pub fn contains(self, port: u16) -> bool {
        self.bits == 0 || (port ^ self.port) >> (16 - u32::from(self.bits)) == 0
    }

    pub fn last(self) -> u16 {
        self.port | ((1u32 << (16 - u32::from(self.bits))) - 1) as u16
    }
}

/// The blocks covering exactly `lo..=hi`, in order.
pub fn blocks(lo: u16, hi: u16) -> Vec<PortBlock> {
    let mut out = Vec::new();
    let (mut lo, hi) = (u32::from(lo), u32::from(hi));
    while lo <= hi {
        // The largest aligned block starting at lo that does not pass hi.
        let mut size = if lo == 0 {
            1 << 16
        } else {
            1u32 << lo.trailing_zeros().min(16)
        };
        while lo + size - 1 > hi {
            size >>= 1;
        }
        out.push(PortBlock {
            port: lo as u16,
            bits: 16 - size.trailing_zeros() as u8,
        });
        lo += size;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_cover_exactly_the_range() {
        for (lo, hi) in [
            (80, 80),
            (80, 90),
            (0, 65535),
            (1, 65535),
            (1000, 2000),
            (65535, 65535),
            (32768, 65535),
        ] {
            let bs = blocks(lo, hi);
            for p in [
                0u16, 1, 79, 80, 81, 90, 91, 999, 1000, 1500, 2000, 2001, 32767, 32768, 65535,
            ] {
                let want = (lo..=hi).contains(&p);
                let got = bs.iter().filter(|b| b.contains(p)).count();
                assert_eq!(got, usize::from(want), "port {p} in {lo}-{hi}: {bs:?}");
            }
            assert_eq!(bs.first().unwrap().port, lo);
            assert_eq!(bs.last().unwrap().last(), hi);
        }
        assert_eq!(blocks(0, 65535), vec![PortBlock { port: 0, bits: 0 }]);
        assert_eq!(blocks(80, 83), vec![PortBlock { port: 80, bits: 14 }]);
        assert!(blocks(1, 65535).len() <= 16);
    }
}
