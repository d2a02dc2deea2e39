//! Linear-Gaussian Kalman filtering over `ndarray`.
