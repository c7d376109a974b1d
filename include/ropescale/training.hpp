// ropescale: mixed context window training and serving helpers (LongRoPE2 section 3.3).
//
// LongRoPE2 fine-tunes one model on two kinds of samples at once: short windows keep the original
// RoPE and long windows use the rescaled one. At inference the model switches factor sets when the
// furthest position crosses the pre-training window. This header gives training and serving code
// the four pieces that scheme needs:
//
//   selection      which factor set a sequence uses (the Hugging Face rule) .... select_window
//   packing        documents -> training segments, position ids, masks ......... pack_documents
//   gradients      the transpose of the rotary kernel ...... rotate(...,
//   RotaryDirection::kBackward) KV cache       re-rotate cached keys from one factor table to
//   another ...... rerotate_keys
//
// Each piece has its own header; this one includes them all:
//
//   window.hpp           the short/long rule: select_window (a length, position ids, a batch)
//   packing.hpp          pack_documents, PackedSegment, PackingPlan
//   rotary.hpp           rotate, rotate_out (direction kBackward for gradients)
//   rerotate.hpp         KeyRerotation, rerotate_keys
#pragma once

#include "ropescale/packing.hpp"
#include "ropescale/rerotate.hpp"
#include "ropescale/rotary.hpp"
#include "ropescale/window.hpp"
