//! Combining CRCs without the data: the CRC of `a || b` from the CRCs of `a` and `b`
//! and the length of `b` (zlib's `crc32_combine`, for the three reflected CRCs S3 uses).
//!
//! S3 gives a multipart object uploaded with CRC32, CRC32C or CRC64NVME a FULL_OBJECT
//! checksum, the CRC of the whole object. Each part's CRC is known once the part is
//! uploaded, so Complete can fold them into the whole object's CRC instead of reading
//! every byte a second time.
//!
//! All three CRCs have init = xorout = all ones, for which
//! `crc(a || b) = crc(a) · x^(8·len(b)) mod P  ⊕  crc(b)` (the ones cancel), computed in
//! the reflected bit order the CRCs use. `x^(8·n) mod P` is the product of
//! `x^(8·2^k) mod P` over the bits `k` set in `n` (a table of 64, built at compile
//! time), so a combination costs at most 64 multiplications whatever the length.
//!
//! The digests are the raw bytes the hashers of [`super::checksums`] finalize to
//! (`s3s::crypto::{Crc32, Crc32c, Crc64Nvme}`): the CRC value in big-endian order, as
//! S3 base64-encodes it.

/// Which CRC to combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Crc {
    /// CRC-32/ISO-HDLC (`x-amz-checksum-crc32`).
    Crc32,
    /// CRC-32C, Castagnoli (`x-amz-checksum-crc32c`).
    Crc32c,
    /// CRC-64/NVME (`x-amz-checksum-crc64nvme`).
    Crc64Nvme,
}

/// The checksum of `a || b` from the checksums of `a` and `b` (raw digests, in the
/// byte order the hashers in checksums.rs finalize to) and the length of `b`.
/// `None` when a digest has the wrong length.
pub(crate) fn combine(crc: Crc, a: &[u8], b: &[u8], b_len: u64) -> Option<Vec<u8>> {
    let params = crc.params();
    let a = params.read(a)?;
    let b = params.read(b)?;
    let shifted = params.multiply(params.x_pow_8n(b_len), a);
    Some(params.write(shifted ^ b))
}

/// The raw digest of zero bytes (all zeros for these CRCs), the start of a fold with
/// [`combine`].
pub(crate) fn empty(crc: Crc) -> Vec<u8> {
    // The register starts at all ones and is xored with all ones at the end.
    vec![0; crc.params().bytes]
}

/// A reflected CRC of 32 or 64 bits, held in the low bits of a `u64`.
struct Params {
    /// The digest's length in bytes (4 or 8).
    bytes: usize,
    /// The reflected polynomial, without its x^width term.
    poly: u64,
    /// `x^(8·2^k) mod P`, k = 0..63: enough for any `u64` byte count.
    x_pow_8_2k: [u64; 64],
}

const CRC32: Params = Params::new(4, 0xEDB8_8320);
const CRC32C: Params = Params::new(4, 0x82F6_3B78);
const CRC64_NVME: Params = Params::new(8, 0x9A6C_9329_AC4B_C9B5);

impl Crc {
    fn params(self) -> &'static Params {
        match self {
            Crc::Crc32 => &CRC32,
            Crc::Crc32c => &CRC32C,
            Crc::Crc64Nvme => &CRC64_NVME,
        }
    }
}

impl Params {
    const fn new(bytes: usize, poly: u64) -> Params {
        let mut params = Params {
            bytes,
            poly,
            x_pow_8_2k: [0; 64],
        };
        // x^1, then square three times: x^8.
        let mut p = params.one() >> 1;
        let mut i = 0;
        while i < 3 {
            p = params.multiply(p, p);
            i += 1;
        }
        let mut k = 0;
        while k < 64 {
            params.x_pow_8_2k[k] = p;
            p = params.multiply(p, p);
            k += 1;
        }
        params
    }

    /// The polynomial 1 (x^0), the top bit in the reflected order.
    const fn one(&self) -> u64 {
        1 << (self.bytes * 8 - 1)
    }

    /// `a · b mod P`, both reflected.
    const fn multiply(&self, a: u64, mut b: u64) -> u64 {
        let mut m = self.one();
        let mut product = 0;
        while m != 0 {
            if a & m != 0 {
                product ^= b;
            }
            // b · x
            b = if b & 1 != 0 {
                (b >> 1) ^ self.poly
            } else {
                b >> 1
            };
            m >>= 1;
        }
        product
    }

    /// `x^(8·n) mod P`.
    fn x_pow_8n(&self, mut n: u64) -> u64 {
        let mut p = self.one();
        let mut k = 0;
        while n != 0 {
            if n & 1 != 0 {
                p = self.multiply(self.x_pow_8_2k[k], p);
            }
            n >>= 1;
            k += 1;
        }
        p
    }

    /// The CRC value of a big-endian digest.
    fn read(&self, digest: &[u8]) -> Option<u64> {
        if digest.len() != self.bytes {
            return None;
        }
        Some(digest.iter().fold(0, |v, &byte| (v << 8) | u64::from(byte)))
    }

    /// The big-endian digest of a CRC value.
    fn write(&self, value: u64) -> Vec<u8> {
        value.to_be_bytes()[8 - self.bytes..].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use s3s::crypto::{Checksum, Crc32, Crc32c, Crc64Nvme};

    const ALL: [Crc; 3] = [Crc::Crc32, Crc::Crc32c, Crc::Crc64Nvme];

    /// The digest as checksums.rs computes it (`Running::finalize`).
    fn digest(crc: Crc, data: &[u8]) -> Vec<u8> {
        match crc {
            Crc::Crc32 => Crc32::checksum(data).to_vec(),
            Crc::Crc32c => Crc32c::checksum(data).to_vec(),
            Crc::Crc64Nvme => Crc64Nvme::checksum(data).to_vec(),
        }
    }

    fn random(len: usize, seed: u64) -> Vec<u8> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..len).map(|_| rng.gen()).collect()
    }

    #[test]
    fn known_vectors() {
        let check = b"123456789";
        assert_eq!(digest(Crc::Crc32, check), 0xCBF4_3926_u32.to_be_bytes());
        assert_eq!(digest(Crc::Crc32c, check), 0xE306_9283_u32.to_be_bytes());
        assert_eq!(
            digest(Crc::Crc64Nvme, check),
            0xAE8B_1486_0A79_9888_u64.to_be_bytes()
        );
        for crc in ALL {
            // Split everywhere, "12345" + "6789" included.
            for at in 0..=check.len() {
                let (a, b) = check.split_at(at);
                let combined = combine(crc, &digest(crc, a), &digest(crc, b), b.len() as u64);
                assert_eq!(combined, Some(digest(crc, check)), "{crc:?} split at {at}");
            }
        }
    }

    #[test]
    fn empty_is_the_digest_of_nothing() {
        for crc in ALL {
            assert_eq!(empty(crc), digest(crc, b""), "{crc:?}");
        }
    }

    #[test]
    fn random_splits() {
        for crc in ALL {
            for (seed, len) in [(1, 1), (2, 7), (3, 64), (4, 1000), (5, 4099)] {
                let data = random(len, seed);
                let whole = digest(crc, &data);
                let mut points: Vec<usize> = vec![0, 1, len / 2, len - 1, len];
                let mut rng = StdRng::seed_from_u64(seed + 100);
                points.extend((0..20).map(|_| rng.gen_range(0..=len)));
                for at in points {
                    let (a, b) = data.split_at(at);
                    let combined = combine(crc, &digest(crc, a), &digest(crc, b), b.len() as u64);
                    assert_eq!(combined.as_ref(), Some(&whole), "{crc:?} len {len} at {at}");
                }
            }
        }
    }

    #[test]
    fn fold_of_parts() {
        let sizes = [5 * 1024 * 1024 + 3, 1, 0, 70_001, 1 << 20];
        let data = random(sizes.iter().sum(), 42);
        for crc in ALL {
            let mut folded = empty(crc);
            let mut rest = &data[..];
            for size in sizes {
                let (part, tail) = rest.split_at(size);
                rest = tail;
                folded = combine(crc, &folded, &digest(crc, part), size as u64)
                    .expect("digests of the right length");
            }
            assert_eq!(folded, digest(crc, &data), "{crc:?}");
        }
    }

    /// Lengths far past what a test can hash (S3's 5 TiB objects and beyond):
    /// combining is associative, `x^(8·(m+n)) = x^(8·m) · x^(8·n)`, across the
    /// carries between table entries.
    #[test]
    fn huge_lengths_are_consistent() {
        const TIB: u64 = 1 << 40;
        let mut rng = StdRng::seed_from_u64(7);
        for crc in ALL {
            let len = crc.params().bytes;
            for (m, n) in [
                (3 * TIB, 2 * TIB),
                (5 * TIB - 1, 1),
                (TIB + 12_345, 4 * TIB - 12_344),
                (u64::MAX / 2, u64::MAX / 2),
                (1 << 63, (1 << 63) - 1),
            ] {
                let (a, b, c): (Vec<u8>, Vec<u8>, Vec<u8>) = (
                    (0..len).map(|_| rng.gen()).collect(),
                    (0..len).map(|_| rng.gen()).collect(),
                    (0..len).map(|_| rng.gen()).collect(),
                );
                let ab = combine(crc, &a, &b, m).expect("right length");
                let left = combine(crc, &ab, &c, n);
                let bc = combine(crc, &b, &c, n).expect("right length");
                let right = combine(crc, &a, &bc, m + n);
                assert_eq!(left, right, "{crc:?} {m} + {n}");
            }
        }
    }

    /// The table against x^8 multiplied in one step at a time.
    #[test]
    fn powers_match_repeated_multiplication() {
        for crc in ALL {
            let params = crc.params();
            let x8 = params.x_pow_8_2k[0];
            let mut naive = params.one();
            for n in 0..3000 {
                assert_eq!(params.x_pow_8n(n), naive, "{crc:?} n = {n}");
                naive = params.multiply(naive, x8);
            }
        }
    }

    #[test]
    fn zeros_double() {
        // crc(0^2n) = combine(crc(0^n), crc(0^n), n), checked against the hasher.
        for crc in ALL {
            let mut z = digest(crc, &[0]);
            let mut n = 1u64;
            while n < 1 << 20 {
                z = combine(crc, &z, &z, n).expect("right length");
                n *= 2;
            }
            assert_eq!(z, digest(crc, &vec![0; 1 << 20]), "{crc:?}");
        }
    }

    #[test]
    fn wrong_lengths() {
        let four = [0u8; 4];
        let eight = [0u8; 8];
        assert_eq!(combine(Crc::Crc32, &eight, &four, 1), None);
        assert_eq!(combine(Crc::Crc32c, &four, &[0; 3], 1), None);
        assert_eq!(combine(Crc::Crc64Nvme, &four, &eight, 1), None);
        assert_eq!(combine(Crc::Crc64Nvme, &eight, &[], 0), None);
        assert_eq!(combine(Crc::Crc64Nvme, &eight, &eight, 0), Some(vec![0; 8]));
    }
}
