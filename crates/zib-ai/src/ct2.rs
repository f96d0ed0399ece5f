//! A reader of CTranslate2's `model.bin` (format version 6): named tensors with their
//! shapes and dtypes (float32, float16, int8 with scales), turned into candle tensors.
//!
//! Layout (little-endian): `u32` format version, the spec name (`u16` length, bytes),
//! `u32` spec revision, `u32` variable count, then per variable its name, `u8` rank,
//! `u32` × rank dims, `u8` dtype, `u32` byte count and the data; then `u32` alias count
//! and (alias, target) name pairs. Every read is bounds-checked: a truncated or garbled
//! file is [`AiError::BadModel`], never a panic.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::AiError;

/// The only format version written by current CTranslate2 releases.
const FORMAT_VERSION: u32 = 6;
/// No Whisper variable has more dimensions; a larger rank means a garbled file.
const MAX_RANK: usize = 8;

/// How a variable's elements are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    BF16,
}

impl DType {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::BF16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::BF16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }
}

/// One stored variable: its shape, dtype and raw little-endian bytes.
#[derive(Clone, Debug)]
pub struct Variable {
    pub shape: Vec<usize>,
    pub dtype: DType,
    data: Vec<u8>,
}

impl Variable {
    /// Element count (1 for a scalar).
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as `f32` (integers converted as numbers, half floats widened).
    pub fn to_f32(&self) -> Vec<f32> {
        let d = &self.data;
        match self.dtype {
            DType::F32 => d
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::F16 => d
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            DType::BF16 => d
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            DType::I8 => d.iter().map(|&b| f32::from(b as i8)).collect(),
            DType::I16 => d
                .chunks_exact(2)
                .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])))
                .collect(),
            DType::I32 => d
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
                .collect(),
        }
    }

    /// A scalar integer (CTranslate2 stores settings such as `num_heads` this way).
    pub fn as_int(&self) -> Option<i64> {
        if self.len() != 1 {
            return None;
        }
        let d = &self.data;
        Some(match self.dtype {
            DType::I8 => i64::from(d[0] as i8),
            DType::I16 => i64::from(i16::from_le_bytes([d[0], d[1]])),
            DType::I32 => i64::from(i32::from_le_bytes([d[0], d[1], d[2], d[3]])),
            _ => return None,
        })
    }
}

/// A parsed `model.bin`.
#[derive(Debug)]
pub struct Ct2Model {
    path: PathBuf,
    /// `WhisperSpec` and the like.
    pub spec: String,
    pub revision: u32,
    variables: HashMap<String, Variable>,
    aliases: HashMap<String, String>,
}

impl Ct2Model {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Self, AiError> {
        let bytes = std::fs::read(path).map_err(|source| AiError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &bytes)
    }

    /// Parses `bytes`; `path` only names the file in errors.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, AiError> {
        let bad = |reason: String| AiError::BadModel {
            path: path.to_path_buf(),
            reason,
        };
        let mut r = Reader { bytes, at: 0 };
        let version = r.u32().map_err(&bad)?;
        if version != FORMAT_VERSION {
            return Err(bad(format!(
                "CTranslate2 format version {version}, only {FORMAT_VERSION} is read"
            )));
        }
        let spec = r.string().map_err(&bad)?;
        let revision = r.u32().map_err(&bad)?;
        let count = r.u32().map_err(&bad)?;
        let mut variables = HashMap::new();
        for _ in 0..count {
            let (name, var) = r.variable().map_err(&bad)?;
            variables.insert(name, var);
        }
        let alias_count = r.u32().map_err(&bad)?;
        let mut aliases = HashMap::new();
        for _ in 0..alias_count {
            let alias = r.string().map_err(&bad)?;
            let target = r.string().map_err(&bad)?;
            aliases.insert(alias, target);
        }
        Ok(Self {
            path: path.to_path_buf(),
            spec,
            revision,
            variables,
            aliases,
        })
    }

    /// The variable called `name` (or that `name` is an alias of).
    pub fn get(&self, name: &str) -> Option<&Variable> {
        self.variables
            .get(name)
            .or_else(|| self.variables.get(self.aliases.get(name)?))
    }

    /// Names of the stored variables (aliases not included).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.variables.keys().map(String::as_str)
    }

    /// The variable as an `f32` tensor on the CPU. An int8 weight is dequantized with
    /// its `<name>_scale` (one scale per output row: `w = q / scale`).
    pub fn tensor(&self, name: &str) -> Result<Tensor, AiError> {
        let var = self.require(name)?;
        let mut values = var.to_f32();
        if var.dtype == DType::I8 {
            if let Some(scale) = self.get(&format!("{name}_scale")) {
                let scale = scale.to_f32();
                let rows = scale.len().max(1);
                if values.len() % rows != 0 {
                    return Err(self.bad(format!("{name}: scale does not fit the weight")));
                }
                let per_row = values.len() / rows;
                for (row, chunk) in values.chunks_mut(per_row.max(1)).enumerate() {
                    let s = scale.get(row).copied().unwrap_or(1.0);
                    if s != 0.0 {
                        chunk.iter_mut().for_each(|v| *v /= s);
                    }
                }
            }
        }
        Ok(Tensor::from_vec(
            values,
            var.shape.as_slice(),
            &Device::Cpu,
        )?)
    }

    /// The variable, or a `BadModel` error naming it.
    pub fn require(&self, name: &str) -> Result<&Variable, AiError> {
        self.get(name)
            .ok_or_else(|| self.bad(format!("no variable {name}")))
    }

    /// A `BadModel` error about this file.
    pub fn bad(&self, reason: String) -> AiError {
        AiError::BadModel {
            path: self.path.clone(),
            reason,
        }
    }
}

/// A bounds-checked cursor over the file's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| {
                format!(
                    "truncated: {n} bytes wanted at offset {} of {}",
                    self.at,
                    self.bytes.len()
                )
            })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A length-prefixed string; CTranslate2 counts (and writes) a trailing NUL.
    fn string(&mut self) -> Result<String, String> {
        let len = usize::from(self.u16()?);
        let raw = self.take(len)?;
        let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
        String::from_utf8(raw.to_vec()).map_err(|_| "a name is not UTF-8".to_string())
    }

    fn variable(&mut self) -> Result<(String, Variable), String> {
        let name = self.string()?;
        let rank = usize::from(self.u8()?);
        if rank > MAX_RANK {
            return Err(format!("{name}: rank {rank}"));
        }
        let mut shape = Vec::with_capacity(rank);
        for _ in 0..rank {
            shape.push(self.u32()? as usize);
        }
        let code = self.u8()?;
        let dtype = DType::from_code(code).ok_or_else(|| format!("{name}: dtype {code}"))?;
        let nbytes = self.u32()? as usize;
        let expected = shape
            .iter()
            .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| format!("{name}: shape {shape:?} overflows"))?;
        if nbytes != expected {
            return Err(format!(
                "{name}: {nbytes} bytes for shape {shape:?} of {dtype:?}"
            ));
        }
        let data = self.take(nbytes)?.to_vec();
        Ok((name, Variable { shape, dtype, data }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a model.bin the way CTranslate2 does.
    fn write(vars: &[(&str, Vec<u32>, u8, Vec<u8>)], aliases: &[(&str, &str)]) -> Vec<u8> {
        fn string(out: &mut Vec<u8>, s: &str) {
            out.extend(((s.len() + 1) as u16).to_le_bytes());
            out.extend(s.as_bytes());
            out.push(0);
        }
        let mut out = Vec::new();
        out.extend(6u32.to_le_bytes());
        string(&mut out, "WhisperSpec");
        out.extend(3u32.to_le_bytes());
        out.extend((vars.len() as u32).to_le_bytes());
        for (name, dims, dtype, data) in vars {
            string(&mut out, name);
            out.push(dims.len() as u8);
            for d in dims {
                out.extend(d.to_le_bytes());
            }
            out.push(*dtype);
            out.extend((data.len() as u32).to_le_bytes());
            out.extend(data);
        }
        out.extend((aliases.len() as u32).to_le_bytes());
        for (a, t) in aliases {
            string(&mut out, a);
            string(&mut out, t);
        }
        out
    }

    fn sample() -> Vec<u8> {
        let f16: Vec<u8> = [1.5f32, -2.0, 0.25, 4.0, 0.0, 1.0]
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect();
        let q: Vec<u8> = [10i8, -20, 30, 40].iter().map(|v| *v as u8).collect();
        let scale: Vec<u8> = [10f32, 20.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        write(
            &[
                ("enc/w", vec![2, 3], 4, f16),
                ("enc/num_heads", vec![], 2, 6i16.to_le_bytes().to_vec()),
                ("q/weight", vec![2, 2], 1, q),
                ("q/weight_scale", vec![2], 0, scale),
            ],
            &[("dec/proj", "enc/w")],
        )
    }

    #[test]
    fn parses_shapes_dtypes_and_aliases() {
        let m = Ct2Model::parse(Path::new("m.bin"), &sample()).expect("parses");
        assert_eq!(m.spec, "WhisperSpec");
        assert_eq!(m.revision, 3);
        let t = m.tensor("enc/w").expect("tensor");
        assert_eq!(t.dims(), &[2, 3]);
        let v: Vec<Vec<f32>> = t.to_vec2().expect("values");
        assert_eq!(v, vec![vec![1.5, -2.0, 0.25], vec![4.0, 0.0, 1.0]]);
        assert_eq!(m.require("enc/num_heads").expect("var").as_int(), Some(6));
        assert_eq!(m.tensor("dec/proj").expect("alias").dims(), &[2, 3]);
        let q: Vec<Vec<f32>> = m.tensor("q/weight").expect("q").to_vec2().expect("v");
        assert_eq!(q, vec![vec![1.0, -2.0], vec![1.5, 2.0]]);
        assert!(m.tensor("missing").is_err());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = sample();
        for len in 0..bytes.len() {
            match Ct2Model::parse(Path::new("m.bin"), &bytes[..len]) {
                Err(AiError::BadModel { reason, .. }) => assert!(!reason.is_empty()),
                other => panic!("{len} bytes: {other:?}"),
            }
        }
    }

    #[test]
    fn garbled_headers_are_errors() {
        let mut bytes = sample();
        bytes[0] = 5;
        assert!(Ct2Model::parse(Path::new("m.bin"), &bytes).is_err());
        // A byte count that disagrees with the shape.
        let bad = write(&[("x", vec![4], 0, vec![0; 12])], &[]);
        assert!(Ct2Model::parse(Path::new("m.bin"), &bad).is_err());
        // A huge shape must not allocate or overflow.
        let bad = write(&[("x", vec![u32::MAX; 3], 0, vec![])], &[]);
        assert!(Ct2Model::parse(Path::new("m.bin"), &bad).is_err());
        let bad = write(&[("x", vec![1], 9, vec![0])], &[]);
        assert!(Ct2Model::parse(Path::new("m.bin"), &bad).is_err());
    }
}
