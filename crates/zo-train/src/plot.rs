//! Plots of a run (PNG and SVG).
