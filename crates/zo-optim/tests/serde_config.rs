//! The configuration types as a configuration file's schema: every value round-trips, `Variance`
//! is `"auto"` or a number, unknown keys are errors, and an `Optimizer` deserialises only through
//! its validation.

use serde_json::{Value, json};
use zo_optim::{
    Algorithm, Difference, Estimator, ExtraSample, KalmanSubspace, NoiseUpdate, Optimizer,
    OptimizerConfig, Schedule, SignMode, UpdateRule, Variance,
};

fn round_trip<T>(value: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let text = serde_json::to_string(value).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn every_algorithm_config_round_trips() {
    for algorithm in Algorithm::ALL {
        for eps in [1e-3, 1e-4, 0.1 + 0.2] {
            let config = algorithm.config(eps);
            assert_eq!(round_trip(&config), config, "{algorithm}");
            let optimizer = Optimizer::named(algorithm, eps, 1e-2).unwrap();
            assert_eq!(round_trip(&optimizer), optimizer, "{algorithm}");
        }
    }
}

#[test]
fn every_variant_round_trips() {
    let estimators = [
        Estimator::KalmanSubspace(KalmanSubspace {
            k: 3,
            m: 7,
            eps: 3e-5,
            alpha: 0.25,
            prior_variance: Variance::Value(1.5e-3),
            noise_variance: Variance::Auto,
            noise_floor: 0.0,
            noise_update: NoiseUpdate::ExtraSamplesOnly,
            extra: ExtraSample::Requery,
            difference: Difference::Central,
            jitter: 0.0,
        }),
        Estimator::Hessian {
            eps: 1e-3,
            alpha: 1e-8,
            log_loss_after_update: true,
        },
        Estimator::Fzoo {
            eps: 2e-3,
            samples: 5,
            std_floor: 1e-6,
        },
    ];
    for estimator in estimators {
        assert_eq!(round_trip(&estimator), estimator);
    }
    let rules = [
        UpdateRule::Sgd { weight_decay: 0.1 },
        UpdateRule::Momentum {
            beta: 0.5,
            weight_decay: 0.0,
        },
        UpdateRule::Sign {
            mode: SignMode::Elementwise,
            weight_decay: 1e-4,
        },
        UpdateRule::Adam {
            beta1: 0.8,
            beta2: 0.99,
            eps: 1e-6,
            weight_decay: 0.0,
        },
        UpdateRule::Conservative,
    ];
    for rule in rules {
        assert_eq!(round_trip(&rule), rule);
    }
    let schedules = [
        Schedule::constant(0.5),
        Schedule::Linear {
            lr: 1e-2,
            end_lr: 0.0,
            total_steps: 10,
        },
        Schedule::Cosine {
            lr: 1e-2,
            end_lr: 1e-4,
            total_steps: 7,
        },
    ];
    for schedule in schedules {
        assert_eq!(round_trip(&schedule), schedule);
    }
}

#[test]
fn variance_is_auto_or_a_number() {
    assert_eq!(serde_json::to_value(Variance::Auto).unwrap(), json!("auto"));
    assert_eq!(
        serde_json::to_value(Variance::Value(1e-3)).unwrap(),
        json!(0.001)
    );
    let read = |v: Value| serde_json::from_value::<Variance>(v);
    assert_eq!(read(json!("auto")).unwrap(), Variance::Auto);
    assert_eq!(read(json!(0.001)).unwrap(), Variance::Value(1e-3));
    assert_eq!(read(json!(2)).unwrap(), Variance::Value(2.0));
    assert_eq!(read(json!({"value": 0.5})).unwrap(), Variance::Value(0.5));
    for bad in [
        json!("Auto"),
        json!("automatic"),
        json!(true),
        json!(null),
        json!({"value": 0.5, "typo": 1}),
        json!({}),
    ] {
        assert!(read(bad.clone()).is_err(), "{bad} was accepted");
    }
    // Inside the estimator, as a configuration file writes it.
    let mut ks =
        serde_json::to_value(Estimator::KalmanSubspace(KalmanSubspace::default())).unwrap();
    assert_eq!(ks["prior_variance"], json!("auto"));
    ks["prior_variance"] = json!(1e-3);
    let Estimator::KalmanSubspace(read_back) = serde_json::from_value(ks).unwrap() else {
        panic!("not a Kalman subspace");
    };
    assert_eq!(read_back.prior_variance, Variance::Value(1e-3));
}

#[test]
fn unknown_fields_are_errors() {
    let spsa = json!({"kind": "spsa", "eps": 1e-3, "samples": 1, "one_sided": false,
        "distribution": "normal"});
    assert_eq!(
        serde_json::from_value::<Estimator>(spsa.clone()).unwrap(),
        Algorithm::Mezo.config(1e-3).estimator
    );
    let mut typo = spsa;
    typo["typo"] = json!(1);
    let err = serde_json::from_value::<Estimator>(typo).unwrap_err();
    assert!(err.to_string().contains("typo"), "{err}");

    let fzoo = json!({"kind": "fzoo", "eps": 1e-3, "samples": 8, "std_floor": 1e-8});
    assert_eq!(
        serde_json::from_value::<Estimator>(fzoo.clone()).unwrap(),
        Algorithm::Fzoo.config(1e-3).estimator
    );
    assert_eq!(
        serde_json::to_value(Algorithm::Fzoo.config(1e-3).estimator).unwrap(),
        fzoo
    );
    let mut typo = fzoo;
    typo["std_flor"] = json!(1e-8);
    let err = serde_json::from_value::<Estimator>(typo).unwrap_err();
    assert!(err.to_string().contains("std_flor"), "{err}");

    let ks = serde_json::to_value(KalmanSubspace::default()).unwrap();
    assert_eq!(
        serde_json::from_value::<KalmanSubspace>(ks.clone()).unwrap(),
        KalmanSubspace::default()
    );
    let mut bad = ks.clone();
    bad["noise_flor"] = json!(0.1);
    assert!(serde_json::from_value::<KalmanSubspace>(bad.clone()).is_err());
    // The same key inside the estimator's newtype variant.
    bad["kind"] = json!("kalman_subspace");
    assert!(serde_json::from_value::<Estimator>(bad).is_err());
    let mut good = ks;
    good["kind"] = json!("kalman_subspace");
    assert_eq!(
        serde_json::from_value::<Estimator>(good).unwrap(),
        Estimator::KalmanSubspace(KalmanSubspace::default())
    );

    let cases = [
        json!({"kind": "sgd", "weight_decay": 0.0, "typo": 1}),
        json!({"kind": "adam", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0,
            "beta3": 0.5}),
        json!({"kind": "conservative", "lr": 1.0}),
    ];
    for case in cases {
        assert!(
            serde_json::from_value::<UpdateRule>(case.clone()).is_err(),
            "{case}"
        );
    }
    assert!(serde_json::from_value::<Schedule>(json!({"kind": "constant", "lr": 0.1})).is_ok());
    assert!(
        serde_json::from_value::<Schedule>(json!({"kind": "constant", "lr": 0.1, "typo": 1}))
            .is_err()
    );
    let config = serde_json::to_value(Algorithm::Mezo.config(1e-3)).unwrap();
    let mut bad = config.clone();
    bad["rule"]["wieght_decay"] = json!(0.1);
    assert!(serde_json::from_value::<OptimizerConfig>(bad).is_err());
    let mut bad = config;
    bad["extra"] = json!(1);
    assert!(serde_json::from_value::<OptimizerConfig>(bad).is_err());
}

#[test]
fn optimizer_deserialises_through_validation() {
    let valid =
        serde_json::to_value(Optimizer::named(Algorithm::Bszo, 1e-3, 1e-2).unwrap()).unwrap();
    assert!(serde_json::from_value::<Optimizer>(valid.clone()).is_ok());
    type Edit = fn(&mut Value);
    let edits: [(&str, Edit); 8] = [
        ("k = 0", |v| v["config"]["estimator"]["k"] = json!(0)),
        ("m < k", |v| v["config"]["estimator"]["m"] = json!(1)),
        ("lr < 0", |v| v["schedule"]["lr"] = json!(-1e-2)),
        ("eps = 0", |v| v["config"]["estimator"]["eps"] = json!(0.0)),
        ("conservative HiZOO", |v| {
            v["config"]["estimator"] = json!({"kind": "hessian", "eps": 1e-3, "alpha": 1e-8,
                "log_loss_after_update": false});
            v["config"]["rule"] = json!({"kind": "conservative"});
        }),
        ("fzoo samples = 1", |v| {
            v["config"]["estimator"] = json!({"kind": "fzoo", "eps": 1e-3, "samples": 1,
                "std_floor": 1e-8});
        }),
        ("fzoo std_floor = 0", |v| {
            v["config"]["estimator"] = json!({"kind": "fzoo", "eps": 1e-3, "samples": 8,
                "std_floor": 0.0});
        }),
        ("fzoo eps < 0", |v| {
            v["config"]["estimator"] = json!({"kind": "fzoo", "eps": -1e-3, "samples": 8,
                "std_floor": 1e-8});
        }),
    ];
    for (what, edit) in edits {
        let mut bad = valid.clone();
        edit(&mut bad);
        // The parts alone are plain values; together they fail `Optimizer::new`'s validation, and
        // deserialising the optimizer reports that very error.
        let config: OptimizerConfig = serde_json::from_value(bad["config"].clone()).unwrap();
        let schedule: Schedule = serde_json::from_value(bad["schedule"].clone()).unwrap();
        let expected = Optimizer::new(config, schedule).unwrap_err().to_string();
        let err = serde_json::from_value::<Optimizer>(bad).unwrap_err();
        assert!(
            err.to_string().contains(&expected),
            "{what}: {err} vs {expected}"
        );
    }
    let mut typo = valid;
    typo["shedule"] = json!({"kind": "constant", "lr": 0.1});
    assert!(serde_json::from_value::<Optimizer>(typo).is_err());
}
