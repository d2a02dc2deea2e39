//! `serde` support (feature `serde`). Types with invariants deserialise through their validating
//! constructors, so a deserialised value is as trustworthy as a constructed one.

use ndarray::{Array1, Array2};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::float::KalmanFloat;
use crate::{Gaussian, InformationGaussian, LinearModel, Measurement, Transition};

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
        let GaussianOwned { mean, cov } = GaussianOwned::deserialize(deserializer)?;
        Gaussian::new(mean, cov).map_err(D::Error::custom)
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
        let InformationOwned {
            information,
            precision,
        } = InformationOwned::deserialize(deserializer)?;
        InformationGaussian::new(information, precision).map_err(D::Error::custom)
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
        let TransitionOwned { f, q, b } = TransitionOwned::deserialize(deserializer)?;
        let transition = Transition::new(f, q).map_err(D::Error::custom)?;
        match b {
            Some(b) => transition.with_control(b).map_err(D::Error::custom),
            None => Ok(transition),
        }
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
        let MeasurementOwned { h, r } = MeasurementOwned::deserialize(deserializer)?;
        Measurement::new(h, r).map_err(D::Error::custom)
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
        let LinearModelOwned {
            transition,
            measurement,
        } = LinearModelOwned::deserialize(deserializer)?;
        LinearModel::new(transition, measurement).map_err(D::Error::custom)
    }
}
