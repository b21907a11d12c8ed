//! The IVR interpreter (placeholder until the ivr work lands).
