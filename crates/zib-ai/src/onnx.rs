//! One ONNX model run with tract: parsed once, then an optimised plan per input shape
//! (a video's frames share one size, so the cache holds a handful at most). tract
//! errors and panics both come back as [`AiError`]: a strange model file must not take
//! the node down.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tract_onnx::prelude::*;

use crate::AiError;

/// Plans kept per model; the least recently used goes first.
const MAX_PLANS: usize = 6;

/// The largest input a plan is made for (elements): bounds memory whatever the caller
/// asks (a 1×3×2048×2048 image).
const MAX_INPUT_ELEMENTS: usize = 3 * 2048 * 2048;

type Plan = Arc<TypedRunnableModel>;

pub(crate) struct OnnxModel {
    path: PathBuf,
    model: InferenceModel,
    /// (input shape, plan), most recently used last.
    plans: Mutex<Vec<(Vec<usize>, Plan)>>,
}

/// A model's first output: its shape and values, row-major.
pub(crate) struct Output {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl OnnxModel {
    /// Parses `path`; also returns the model's `metadata_props` (key → value).
    pub fn load(path: &Path) -> Result<(Self, HashMap<String, String>), AiError> {
        let bytes = std::fs::read(path).map_err(|source| AiError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |reason: String| AiError::BadModel {
            path: path.to_path_buf(),
            reason,
        };
        let parsed = catch_unwind(AssertUnwindSafe(|| {
            // The files' own output and intermediate shapes name a symbolic batch that
            // tract cannot unify with a fixed input: the shapes come from the input.
            let onnx = tract_onnx::onnx()
                .with_ignore_output_shapes(true)
                .with_ignore_value_info(true);
            let proto = onnx.proto_model_for_read(&mut bytes.as_slice())?;
            let model = onnx.model_for_proto_model(&proto)?;
            let meta = proto
                .metadata_props
                .iter()
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect::<HashMap<_, _>>();
            TractResult::Ok((model, meta))
        }))
        .map_err(|_| bad("tract panicked parsing it".into()))?
        .map_err(|e| bad(format!("{e:#}")))?;
        let (model, meta) = parsed;
        let inputs = model.input_outlets().map_or(0, |i| i.len());
        let outputs = model.output_outlets().map_or(0, |o| o.len());
        if inputs != 1 || outputs == 0 {
            return Err(bad("expected one input and at least one output".into()));
        }
        Ok((
            OnnxModel {
                path: path.to_path_buf(),
                model,
                plans: Mutex::new(Vec::new()),
            },
            meta,
        ))
    }

    /// Runs the model on one f32 input of `shape` (`data` row-major).
    pub fn run(&self, shape: &[usize], data: &[f32]) -> Result<Output, AiError> {
        let elements: usize = shape.iter().product();
        if elements != data.len() || elements == 0 || elements > MAX_INPUT_ELEMENTS {
            return Err(AiError::Input(format!(
                "an input of shape {shape:?} with {} values",
                data.len()
            )));
        }
        let plan = self.plan(shape)?;
        let run = catch_unwind(AssertUnwindSafe(|| {
            let input = Tensor::from_shape(shape, data)?;
            let outputs = plan.run(tvec!(input.into()))?;
            let first = outputs
                .first()
                .ok_or_else(|| TractError::msg("the model gave no output"))?;
            let view = first.to_plain_array_view::<f32>()?;
            TractResult::Ok(Output {
                shape: view.shape().to_vec(),
                data: view.iter().copied().collect(),
            })
        }))
        .map_err(|_| AiError::Inference(format!("tract panicked running {}", self.name())))?;
        run.map_err(|e| AiError::Inference(format!("{}: {e:#}", self.name())))
    }

    /// The plan for `shape`: cached, or made (seconds) and cached.
    fn plan(&self, shape: &[usize]) -> Result<Plan, AiError> {
        let mut plans = self
            .plans
            .lock()
            .map_err(|_| AiError::Inference("a model's plan cache was poisoned".into()))?;
        if let Some(i) = plans.iter().position(|(s, _)| s == shape) {
            let hit = plans.remove(i);
            let plan = Arc::clone(&hit.1);
            plans.push(hit);
            return Ok(plan);
        }
        let made = catch_unwind(AssertUnwindSafe(|| {
            self.model
                .clone()
                .with_input_fact(
                    0,
                    InferenceFact::dt_shape(f32::datum_type(), shape.to_vec()),
                )?
                .into_optimized()?
                .into_runnable()
        }))
        .map_err(|_| AiError::BadModel {
            path: self.path.clone(),
            reason: format!("tract panicked planning an input of shape {shape:?}"),
        })?
        .map_err(|e| AiError::BadModel {
            path: self.path.clone(),
            reason: format!("planning an input of shape {shape:?}: {e:#}"),
        })?;
        if plans.len() >= MAX_PLANS {
            plans.remove(0);
        }
        plans.push((shape.to_vec(), Arc::clone(&made)));
        Ok(made)
    }

    fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// Bilinear resampling (pixel centres, as OpenCV's `INTER_LINEAR`) of the `crop`
/// (`[x, y, w, h]`, pixels) of an RGB24 image into a `out_w`×`out_h` region of a
/// planar (CHW) f32 buffer `pad_w` wide and `pad_h` high, whose other values are
/// `fill`. Channel `c` of the output is RGB channel `order[c]`, normalised by `norm`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn to_planar(
    rgb: &[u8],
    width: usize,
    crop: [usize; 4],
    out: (usize, usize),
    pad: (usize, usize),
    order: [usize; 3],
    fill: f32,
    norm: impl Fn(usize, f32) -> f32,
) -> Vec<f32> {
    let (out_w, out_h) = (out.0.min(pad.0), out.1.min(pad.1));
    let (pad_w, pad_h) = pad;
    let mut planes = vec![fill; 3 * pad_w * pad_h];
    let [cx, cy, cw, ch] = crop;
    if cw == 0 || ch == 0 || out_w == 0 || out_h == 0 {
        return planes;
    }
    let sx = cw as f32 / out_w as f32;
    let sy = ch as f32 / out_h as f32;
    let axis = |d: usize, scale: f32, len: usize| {
        let s = ((d as f32 + 0.5) * scale - 0.5).clamp(0.0, (len - 1) as f32);
        let i0 = s.floor() as usize;
        let i1 = (i0 + 1).min(len - 1);
        (i0, i1, s - i0 as f32)
    };
    let xs: Vec<_> = (0..out_w).map(|x| axis(x, sx, cw)).collect();
    for y in 0..out_h {
        let (y0, y1, fy) = axis(y, sy, ch);
        let row0 = (cy + y0) * width;
        let row1 = (cy + y1) * width;
        for (x, &(x0, x1, fx)) in xs.iter().enumerate() {
            let p00 = (row0 + cx + x0) * 3;
            let p01 = (row0 + cx + x1) * 3;
            let p10 = (row1 + cx + x0) * 3;
            let p11 = (row1 + cx + x1) * 3;
            for (c, &src) in order.iter().enumerate() {
                let at = |p: usize| f32::from(rgb.get(p + src).copied().unwrap_or(0));
                let top = at(p00) * (1.0 - fx) + at(p01) * fx;
                let bottom = at(p10) * (1.0 - fx) + at(p11) * fx;
                let v = top * (1.0 - fy) + bottom * fy;
                planes[c * pad_w * pad_h + y * pad_w + x] = norm(c, v);
            }
        }
    }
    planes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<OnnxModel>();
        shared::<crate::ocr::Ocr>();
        shared::<crate::nudity::NudityDetector>();
    }

    #[test]
    fn planar_resampling_keeps_flat_colours_and_pads() {
        // 4×2 image: left half red, right half blue.
        let mut rgb = Vec::new();
        for _ in 0..2 {
            for x in 0..4 {
                rgb.extend_from_slice(if x < 2 { &[255, 0, 0] } else { &[0, 0, 255] });
            }
        }
        // Whole image to 2×1 in a 3×2 pad, BGR order, /255.
        let p = to_planar(
            &rgb,
            4,
            [0, 0, 4, 2],
            (2, 1),
            (3, 2),
            [2, 1, 0],
            -1.0,
            |_, v| v / 255.0,
        );
        assert_eq!(p.len(), 18);
        // Plane 0 is blue: 0 on the left, 1 on the right, then padding.
        assert_eq!(&p[0..6], &[0.0, 1.0, -1.0, -1.0, -1.0, -1.0]);
        // Plane 2 is red.
        assert_eq!(&p[12..18], &[1.0, 0.0, -1.0, -1.0, -1.0, -1.0]);
        // A crop of the right half only.
        let q = to_planar(
            &rgb,
            4,
            [2, 0, 2, 2],
            (1, 1),
            (1, 1),
            [0, 1, 2],
            0.0,
            |_, v| v,
        );
        assert_eq!(q, vec![0.0, 0.0, 255.0]);
    }
}
