//! `serde` support (feature `serde`). Types with invariants deserialise through their validating
//! constructors, so a deserialised value is as trustworthy as a constructed one.

use ndarray::{Array1, Array2};
use std::fmt::Display;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::float::KalmanFloat;
use crate::{Gaussian, InformationGaussian, LinearModel, Measurement, Transition};

/// Deserialises the unchecked mirror `M` and builds the value from it through its validating
/// constructor, reporting a rejection as a deserialisation error.
fn validated<'de, D, M, V, E>(
    deserializer: D,
    build: impl FnOnce(M) -> Result<V, E>,
) -> Result<V, D::Error>
where
    D: Deserializer<'de>,
    M: Deserialize<'de>,
    E: Display,
{
    build(M::deserialize(deserializer)?).map_err(D::Error::custom)
}

#[derive(Serialize)]
struct GaussianRef<'a, T> {
    mean: &'a Array1<T>,
    cov: &'a Array2<T>,
}

#[derive(Deserialize)]
struct GaussianOwned<T> {
    mean: Array1<T>,
    cov: Array2<T>,
}

impl<T: KalmanFloat + Serialize> Serialize for Gaussian<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        GaussianRef {
            mean: self.mean(),
            cov: self.cov(),
        }
        .serialize(serializer)
    }
}

impl<'de, T: KalmanFloat + Deserialize<'de>> Deserialize<'de> for Gaussian<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        validated(deserializer, |GaussianOwned { mean, cov }| {
            Gaussian::new(mean, cov)
        })
    }
}

#[derive(Serialize)]
struct InformationRef<'a, T> {
    information: &'a Array1<T>,
    precision: &'a Array2<T>,
}

#[derive(Deserialize)]
struct InformationOwned<T> {
    information: Array1<T>,
    precision: Array2<T>,
}

impl<T: KalmanFloat + Serialize> Serialize for InformationGaussian<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        InformationRef {
            information: self.information(),
            precision: self.precision(),
        }
        .serialize(serializer)
    }
}

impl<'de, T: KalmanFloat + Deserialize<'de>> Deserialize<'de> for InformationGaussian<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        validated(deserializer, |m: InformationOwned<T>| {
            InformationGaussian::new(m.information, m.precision)
        })
    }
}

#[derive(Serialize)]
struct TransitionRef<'a, T> {
    f: &'a Array2<T>,
    q: &'a Array2<T>,
    b: Option<&'a Array2<T>>,
}

#[derive(Deserialize)]
struct TransitionOwned<T> {
    f: Array2<T>,
    q: Array2<T>,
    #[serde(default)]
    b: Option<Array2<T>>,
}

impl<T: KalmanFloat + Serialize> Serialize for Transition<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TransitionRef {
            f: self.f(),
            q: self.q(),
            b: self.b(),
        }
        .serialize(serializer)
    }
}

impl<'de, T: KalmanFloat + Deserialize<'de>> Deserialize<'de> for Transition<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        validated(deserializer, |TransitionOwned { f, q, b }| {
            let transition = Transition::new(f, q)?;
            match b {
                Some(b) => transition.with_control(b),
                None => Ok(transition),
            }
        })
    }
}

#[derive(Serialize)]
struct MeasurementRef<'a, T> {
    h: &'a Array2<T>,
    r: &'a Array2<T>,
}

#[derive(Deserialize)]
struct MeasurementOwned<T> {
    h: Array2<T>,
    r: Array2<T>,
}

impl<T: KalmanFloat + Serialize> Serialize for Measurement<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        MeasurementRef {
            h: self.h(),
            r: self.r(),
        }
        .serialize(serializer)
    }
}

impl<'de, T: KalmanFloat + Deserialize<'de>> Deserialize<'de> for Measurement<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        validated(deserializer, |MeasurementOwned { h, r }| {
            Measurement::new(h, r)
        })
    }
}

#[derive(Serialize)]
struct LinearModelRef<'a, T: KalmanFloat + Serialize> {
    transition: &'a Transition<T>,
    measurement: &'a Measurement<T>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "T: KalmanFloat + Deserialize<'de>"))]
struct LinearModelOwned<T: KalmanFloat> {
    transition: Transition<T>,
    measurement: Measurement<T>,
}

impl<T: KalmanFloat + Serialize> Serialize for LinearModel<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        LinearModelRef {
            transition: self.transition(),
            measurement: self.measurement(),
        }
        .serialize(serializer)
    }
}

impl<'de, T: KalmanFloat + Deserialize<'de>> Deserialize<'de> for LinearModel<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        validated(deserializer, |m: LinearModelOwned<T>| {
            LinearModel::new(m.transition, m.measurement)
        })
    }
}
