//! The random source for choices that change what the cluster does (which nodes
//! take a file, in which order), so the deterministic simulation can replay them
//! from a seed. Without the `sim` feature it is `rand::thread_rng()` itself.

#[cfg(not(feature = "sim"))]
pub use rand::rngs::ThreadRng as Rng;

/// The thread's random source: `rand::thread_rng()` unless a simulation seeded it.
#[cfg(not(feature = "sim"))]
pub fn rng() -> Rng {
    rand::thread_rng()
}

#[cfg(feature = "sim")]
pub use seeded::{rng, seed, unseed, Rng};

#[cfg(feature = "sim")]
mod seeded {
    use std::cell::RefCell;

    use rand::rngs::StdRng;
    use rand::{RngCore, SeedableRng};

    thread_local! {
        static SEEDED: RefCell<Option<StdRng>> = const { RefCell::new(None) };
    }

    /// Draws from this thread's seeded generator, or from `thread_rng()` if none.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct Rng;

    /// The thread's random source.
    pub fn rng() -> Rng {
        Rng
    }

    /// From now on this thread draws from a generator seeded with `seed`.
    pub fn seed(seed: u64) {
        SEEDED.with(|s| *s.borrow_mut() = Some(StdRng::seed_from_u64(seed)));
    }

    /// Back to `thread_rng()` on this thread.
    pub fn unseed() {
        SEEDED.with(|s| *s.borrow_mut() = None);
    }

    fn with<T>(f: impl FnOnce(&mut dyn RngCore) -> T) -> T {
        SEEDED.with(|s| match s.borrow_mut().as_mut() {
            Some(r) => f(r),
            None => f(&mut rand::thread_rng()),
        })
    }

    impl RngCore for Rng {
        fn next_u32(&mut self) -> u32 {
            with(|r| r.next_u32())
        }
        fn next_u64(&mut self) -> u64 {
            with(|r| r.next_u64())
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            with(|r| r.fill_bytes(dest))
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
            with(|r| r.try_fill_bytes(dest))
        }
    }

    #[cfg(test)]
    mod tests {
        use rand::Rng as _;

        #[test]
        fn a_seed_replays_the_same_draws() {
            super::seed(7);
            let a: Vec<u32> = (0..8).map(|_| super::rng().gen()).collect();
            super::seed(7);
            let b: Vec<u32> = (0..8).map(|_| super::rng().gen()).collect();
            super::unseed();
            assert_eq!(a, b);
        }
    }
}
