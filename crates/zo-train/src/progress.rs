//! A terminal progress bar as an observer.
