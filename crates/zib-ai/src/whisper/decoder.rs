//! Whisper's text decoder with a self-attention cache.
//!
//! candle-transformers' `TextDecoder` caches only the cross-attention keys, so every
//! greedy step runs the whole token prefix through every layer again: a window of
//! n tokens costs ~n²/2 token passes. This one keeps each layer's self-attention keys
//! and values, so a step runs only the new token. Same weights (the Hugging Face names
//! candle loads), same arithmetic.

use candle_core::{Device, Result, Tensor, D};
use candle_nn::{Embedding, LayerNorm, Linear, Module, VarBuilder};
use candle_transformers::models::whisper::Config;

struct Attention {
    query: Linear,
    key: Linear,
    value: Linear,
    out: Linear,
    n_head: usize,
}

impl Attention {
    fn load(n_state: usize, n_head: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            query: candle_nn::linear(n_state, n_state, vb.pp("q_proj"))?,
            key: candle_nn::linear_no_bias(n_state, n_state, vb.pp("k_proj"))?,
            value: candle_nn::linear(n_state, n_state, vb.pp("v_proj"))?,
            out: candle_nn::linear(n_state, n_state, vb.pp("out_proj"))?,
            n_head,
        })
    }

    /// `(batch, ctx, state)` → `(batch, head, ctx, state / head)`.
    fn heads(&self, x: &Tensor) -> Result<Tensor> {
        let (batch, ctx, state) = x.dims3()?;
        x.reshape((batch, ctx, self.n_head, state / self.n_head))?
            .transpose(1, 2)?
            .contiguous()
    }

    fn keys_values(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            self.heads(&self.key.forward(x)?)?,
            self.heads(&self.value.forward(x)?)?,
        ))
    }

    /// Attention of `x`'s queries over the given (already split) keys and values.
    fn attend(&self, x: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let q = self.heads(&self.query.forward(x)?)?;
        let head_dim = q.dim(D::Minus1)?;
        let mut qk = (q.matmul(&k.t()?)? * (head_dim as f64).powf(-0.5))?;
        if let Some(mask) = mask {
            qk = qk.broadcast_add(mask)?;
        }
        let weights = candle_nn::ops::softmax_last_dim(&qk)?;
        let mixed = weights.matmul(v)?.transpose(1, 2)?.flatten_from(2)?;
        self.out.forward(&mixed)
    }
}

struct Block {
    attn: Attention,
    attn_ln: LayerNorm,
    cross: Attention,
    cross_ln: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    mlp_ln: LayerNorm,
}

fn layer_norm(size: usize, vb: VarBuilder) -> Result<LayerNorm> {
    Ok(LayerNorm::new(
        vb.get(size, "weight")?,
        vb.get(size, "bias")?,
        1e-5,
    ))
}

impl Block {
    fn load(n_state: usize, n_head: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            attn: Attention::load(n_state, n_head, vb.pp("self_attn"))?,
            attn_ln: layer_norm(n_state, vb.pp("self_attn_layer_norm"))?,
            cross: Attention::load(n_state, n_head, vb.pp("encoder_attn"))?,
            cross_ln: layer_norm(n_state, vb.pp("encoder_attn_layer_norm"))?,
            fc1: candle_nn::linear(n_state, 4 * n_state, vb.pp("fc1"))?,
            fc2: candle_nn::linear(4 * n_state, n_state, vb.pp("fc2"))?,
            mlp_ln: layer_norm(n_state, vb.pp("final_layer_norm"))?,
        })
    }

    fn forward(&self, x: &Tensor, cache: &mut LayerCache, mask: Option<&Tensor>) -> Result<Tensor> {
        let normed = self.attn_ln.forward(x)?;
        let (k, v) = self.attn.keys_values(&normed)?;
        let (k, v) = match cache.own.take() {
            Some((past_k, past_v)) => (
                Tensor::cat(&[&past_k, &k], 2)?,
                Tensor::cat(&[&past_v, &v], 2)?,
            ),
            None => (k, v),
        };
        let x = (x + self.attn.attend(&normed, &k, &v, mask)?)?;
        cache.own = Some((k, v));
        let (audio_k, audio_v) = &cache.audio;
        let x = (&x
            + self
                .cross
                .attend(&self.cross_ln.forward(&x)?, audio_k, audio_v, None)?)?;
        let mlp = self
            .fc2
            .forward(&self.fc1.forward(&self.mlp_ln.forward(&x)?)?.gelu()?)?;
        x + mlp
    }
}

struct LayerCache {
    /// The self-attention keys and values of the tokens decoded so far.
    own: Option<(Tensor, Tensor)>,
    /// The cross-attention keys and values of the window's audio features.
    audio: (Tensor, Tensor),
}

/// One window's decoding state: how many tokens went in, and every layer's cache.
pub struct DecoderState {
    len: usize,
    layers: Vec<LayerCache>,
}

pub struct CachedDecoder {
    embedding: Embedding,
    positions: Tensor,
    blocks: Vec<Block>,
    ln: LayerNorm,
    n_ctx: usize,
}

impl CachedDecoder {
    /// Loads from the `model.decoder` names candle's Whisper uses.
    pub fn load(vb: VarBuilder, cfg: &Config) -> Result<Self> {
        let n_state = cfg.d_model;
        let n_ctx = cfg.max_target_positions;
        let embedding = candle_nn::embedding(cfg.vocab_size, n_state, vb.pp("embed_tokens"))?;
        let positions = vb.get((n_ctx, n_state), "embed_positions.weight")?;
        let blocks = (0..cfg.decoder_layers)
            .map(|i| {
                Block::load(
                    n_state,
                    cfg.decoder_attention_heads,
                    vb.pp(format!("layers.{i}")),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let ln = layer_norm(n_state, vb.pp("layer_norm"))?;
        Ok(Self {
            embedding,
            positions,
            blocks,
            ln,
            n_ctx,
        })
    }

    /// A fresh state for a window whose encoder output is `audio`.
    pub fn start(&self, audio: &Tensor) -> Result<DecoderState> {
        let layers = self
            .blocks
            .iter()
            .map(|b| {
                Ok(LayerCache {
                    own: None,
                    audio: b.cross.keys_values(audio)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DecoderState { len: 0, layers })
    }

    /// Runs `tokens` (the next ones after what `state` has seen) and returns their
    /// final hidden states, `(1, tokens.len(), state)`.
    pub fn forward(&self, state: &mut DecoderState, tokens: &[u32]) -> Result<Tensor> {
        let (past, n) = (state.len, tokens.len());
        if past + n > self.n_ctx {
            candle_core::bail!("{} tokens exceed the text context {}", past + n, self.n_ctx);
        }
        let ids = Tensor::new(tokens, &Device::Cpu)?.unsqueeze(0)?;
        let mut x = self
            .embedding
            .forward(&ids)?
            .broadcast_add(&self.positions.narrow(0, past, n)?)?;
        // A token sees every earlier one; only several new tokens at once need a mask.
        let mask = if n > 1 {
            let values: Vec<f32> = (0..n)
                .flat_map(|i| {
                    (0..past + n).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 })
                })
                .collect();
            Some(Tensor::from_vec(values, (n, past + n), &Device::Cpu)?)
        } else {
            None
        };
        for (block, cache) in self.blocks.iter().zip(state.layers.iter_mut()) {
            x = block.forward(&x, cache, mask.as_ref())?;
        }
        state.len += n;
        self.ln.forward(&x)
    }

    /// Logits over the vocabulary for hidden states `(1, n, state)` (tied embeddings).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        hidden.broadcast_matmul(&self.embedding.embeddings().t()?)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, IndexOp};
    use candle_transformers::models::whisper::model::Whisper;

    use super::*;
    use crate::ct2::Ct2Model;
    use crate::ModelsDir;
    use zib_proto::pipeline::TranscriptionTier;

    /// Greedy decoding with the cache picks the same tokens, with the same logits,
    /// as candle's decoder running the whole prefix every step.
    #[test]
    fn cached_steps_match_candles_full_prefix_decoder() {
        let dir = ModelsDir::from_env().whisper(TranscriptionTier::Fastest);
        let ct2 = Ct2Model::load(&dir.join("model.bin")).unwrap_or_else(|e| {
            panic!("{e}: run scripts/install-models.sh fastest (or set ZIB_MODELS_DIR)")
        });
        let (tensors, config) = super::super::weights::from_ct2(&ct2).unwrap();
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
        let ours = CachedDecoder::load(vb.pp("model.decoder"), &config).unwrap();
        let mut theirs = Whisper::load(&vb, config.clone()).unwrap();
        // Audio features: the encoder on a chirp's log-mel.
        let samples: Vec<f32> = (0..crate::audio::WINDOW_SAMPLES / 3)
            .map(|i| {
                let t = i as f32 / crate::audio::SAMPLE_RATE as f32;
                0.3 * (2.0 * std::f32::consts::PI * (200.0 + 300.0 * t) * t).sin()
            })
            .collect();
        let mel = crate::audio::LogMel::new(config.num_mel_bins).compute(&samples);
        let mel = Tensor::from_vec(
            mel,
            (1, config.num_mel_bins, crate::audio::N_FRAMES),
            &Device::Cpu,
        )
        .unwrap();
        let audio = theirs.encoder.forward(&mel, true).unwrap();

        let vocab = super::super::decode::Vocabulary::load(&dir, config.vocab_size).unwrap();
        let mut tokens = vocab.prompt();
        let mut state = ours.start(&audio).unwrap();
        let mut fresh = tokens.clone();
        for step in 0..12 {
            let hidden = ours.forward(&mut state, &fresh).unwrap();
            let n = fresh.len();
            let cached: Vec<f32> = ours
                .logits(&hidden.i((..1, n - 1..)).unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let input = Tensor::new(tokens.as_slice(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let full = theirs.decoder.forward(&input, &audio, step == 0).unwrap();
            let last = tokens.len();
            let full: Vec<f32> = theirs
                .decoder
                .final_linear(&full.i((..1, last - 1..)).unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let worst = cached
                .iter()
                .zip(&full)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-2, "step {step}: logits differ by {worst}");
            let argmax = |v: &[f32]| {
                (0..v.len())
                    .max_by(|&a, &b| v[a].total_cmp(&v[b]))
                    .unwrap_or(0) as u32
            };
            let next = argmax(&cached);
            assert_eq!(next, argmax(&full), "step {step}");
            tokens.push(next);
            fresh = vec![next];
        }
    }
}
