//! A reader of CTranslate2's `model.bin` (format version 6): named tensors with their
//! shapes and dtypes (float32, float16, int8 with scales), turned into candle tensors.
