//! Reads the real files of the repository's data folder.

mod common;

use std::collections::HashSet;

use zo_data::{
    Example, FEW_SHOT_SEEDS, FewGlueSplit, KShotSplit, PoolSplit, Protocol, Task, load_fewglue,
    load_kshot, load_pool, load_splits,
};

fn distribution(task: Task, examples: &[Example]) -> Vec<usize> {
    let mut d = vec![0; task.num_classes()];
    for e in examples {
        d[e.label] += 1;
    }
    d
}

fn keys(examples: &[Example]) -> HashSet<Vec<String>> {
    examples.iter().map(|e| e.texts.clone()).collect()
}

#[test]
fn kshot_splits_have_sixteen_per_class_and_full_test_sets() {
    let dir = common::data_dir();
    let tests: [(Task, Option<&[usize]>); 6] = [
        (Task::Sst2, Some(&[428, 444])),
        (Task::Sst5, Some(&[279, 633, 389, 510, 399])),
        (Task::Trec, Some(&[138, 94, 9, 65, 81, 113])),
        (Task::Rte, Some(&[146, 131])),
        (Task::Snli, None),
        (Task::Mnli, None),
    ];
    for (task, test_dist) in tests {
        let mut first_test = None;
        for seed in FEW_SHOT_SEEDS {
            let train = load_kshot(&dir, task, seed, KShotSplit::Train).unwrap();
            let dev = load_kshot(&dir, task, seed, KShotSplit::Dev).unwrap();
            let sixteen = vec![16; task.num_classes()];
            assert_eq!(distribution(task, &train), sixteen, "{task} {seed} train");
            assert_eq!(distribution(task, &dev), sixteen, "{task} {seed} dev");
            assert!(keys(&train).is_disjoint(&keys(&dev)), "{task} {seed}");
            if let Some(want) = test_dist {
                let test = load_kshot(&dir, task, seed, KShotSplit::Test).unwrap();
                assert_eq!(distribution(task, &test), want, "{task} {seed} test");
                // The test file is the same in every seed folder.
                let first = first_test.get_or_insert_with(|| test.clone());
                assert_eq!(*first, test, "{task} {seed}");
            } else {
                assert!(load_kshot(&dir, task, seed, KShotSplit::Test).is_err());
            }
        }
    }
}

#[test]
fn pools_and_fewglue_files_have_the_documented_sizes() {
    let dir = common::data_dir();
    for (task, train, dev) in [
        (Task::Sst2, 6227, 692),
        (Task::Sst5, 7689, 855),
        (Task::Trec, 4906, 546),
        (Task::Rte, 2240, 249),
        (Task::Snli, 8999, 1000),
        (Task::Mnli, 8999, 1000),
    ] {
        assert_eq!(
            load_pool(&dir, task, PoolSplit::Train).unwrap().len(),
            train,
            "{task}"
        );
        assert_eq!(
            load_pool(&dir, task, PoolSplit::Dev).unwrap().len(),
            dev,
            "{task}"
        );
    }
    let snli = load_pool(&dir, Task::Snli, PoolSplit::Dev).unwrap();
    assert_eq!(distribution(Task::Snli, &snli), [346, 328, 326]);
    for (task, val, val_dist) in [
        (Task::Cb, 56, &[23, 28, 5][..]),
        (Task::BoolQ, 3270, &[2033, 1237]),
        (Task::Copa, 100, &[55, 45]),
        (Task::Wsc, 104, &[38, 66]),
        (Task::Wic, 638, &[319, 319]),
        (Task::Rte, 277, &[146, 131]),
    ] {
        let train = load_fewglue(&dir, task, FewGlueSplit::Train).unwrap();
        let dev32 = load_fewglue(&dir, task, FewGlueSplit::Dev32).unwrap();
        let test = load_fewglue(&dir, task, FewGlueSplit::Val).unwrap();
        assert_eq!(
            (train.len(), dev32.len(), test.len()),
            (32, 32, val),
            "{task}"
        );
        assert_eq!(distribution(task, &test), val_dist, "{task}");
        assert!(keys(&train).is_disjoint(&keys(&dev32)), "{task}");
    }
    // The two copies of the RTE test set agree.
    let tsv = load_kshot(&dir, Task::Rte, 13, KShotSplit::Test).unwrap();
    let jsonl = load_fewglue(&dir, Task::Rte, FewGlueSplit::Val).unwrap();
    assert_eq!(
        distribution(Task::Rte, &tsv),
        distribution(Task::Rte, &jsonl)
    );
}

#[test]
fn trec_label_order_is_lm_bffs() {
    let dir = common::data_dir();
    let test = load_kshot(&dir, Task::Trec, 13, KShotSplit::Test).unwrap();
    let labels_of = |prefix: &str| -> HashSet<usize> {
        test.iter()
            .filter(|e| e.text(0).starts_with(prefix))
            .map(|e| e.label)
            .collect()
    };
    assert_eq!(labels_of("What city"), HashSet::from([4])); // location
    assert_eq!(labels_of("Who "), HashSet::from([3])); // human
    let stand_for: HashSet<usize> = test
        .iter()
        .filter(|e| e.text(0).contains("stand for"))
        .map(|e| e.label)
        .collect();
    assert_eq!(stand_for, HashSet::from([2])); // abbreviation
}

#[test]
fn few_shot_protocol_splits() {
    let dir = common::data_dir();
    for task in Task::ALL {
        for seed in FEW_SHOT_SEEDS {
            let s = load_splits(&dir, task, Protocol::few_shot(seed)).unwrap();
            assert!(!s.validation.is_empty() && !s.test.is_empty(), "{task}");
            assert!(
                keys(&s.train).is_disjoint(&keys(&s.validation)),
                "{task} {seed}"
            );
            if matches!(task, Task::Snli | Task::Mnli) {
                let seen: HashSet<_> = keys(&s.train)
                    .union(&keys(&s.validation))
                    .cloned()
                    .collect();
                assert!(seen.is_disjoint(&keys(&s.test)), "{task} {seed}");
                let expected = if (task, seed) == (Task::Mnli, 87) {
                    998
                } else {
                    1000
                };
                assert_eq!(s.test.len(), expected, "{task} {seed}");
            }
        }
    }
    let rte = load_splits(&dir, Task::Rte, Protocol::few_shot(21)).unwrap();
    assert_eq!(
        (rte.train.len(), rte.validation.len(), rte.test.len()),
        (32, 32, 277)
    );
}

#[test]
fn sampled_protocol_is_deterministic_and_disjoint() {
    let dir = common::data_dir();
    for task in Task::ALL {
        let a = load_splits(&dir, task, Protocol::sampled(task, 0)).unwrap();
        let b = load_splits(&dir, task, Protocol::sampled(task, 0)).unwrap();
        assert_eq!(a, b, "{task}: same seed, same splits");
        let train = keys(&a.train);
        let val = keys(&a.validation);
        let test = keys(&a.test);
        assert_eq!(train.len(), a.train.len(), "{task}: no duplicates in train");
        assert!(train.is_disjoint(&val), "{task}: train/validation overlap");
        assert!(
            train.is_disjoint(&test) && val.is_disjoint(&test),
            "{task}: test overlap"
        );
        let sizes = (a.train.len(), a.validation.len());
        match task {
            Task::Cb | Task::BoolQ | Task::Copa | Task::Wsc | Task::Wic => {
                assert_eq!(sizes, (32, 32), "{task}")
            }
            _ => {
                assert_eq!(sizes, (1000, 500), "{task}");
                let c = load_splits(&dir, task, Protocol::sampled(task, 1)).unwrap();
                assert_ne!(a.train, c.train, "{task}: another seed, another sample");
            }
        }
    }
    let sst2 = load_splits(&dir, Task::Sst2, Protocol::sampled(Task::Sst2, 0)).unwrap();
    assert_eq!(sst2.test.len(), 872);
    // Smaller requests are prefixes of the same permutation.
    let small = Protocol::Sampled {
        seed: 0,
        train: 10,
        validation: 5,
    };
    let s = load_splits(&dir, Task::Sst2, small).unwrap();
    assert_eq!(s.train, sst2.train[..10]);
    assert_eq!(s.validation.len(), 5);
}

#[test]
fn every_task_renders_its_prompts() {
    let dir = common::data_dir();
    for task in Task::ALL {
        let s = load_splits(&dir, task, Protocol::few_shot(13)).unwrap();
        let all = s.train.iter().chain(&s.validation).chain(&s.test);
        let masked = task.masked_prompt();
        assert_eq!(
            masked.is_ok(),
            !matches!(task, Task::Copa | Task::Wsc),
            "{task}"
        );
        for ex in all {
            if let Ok(m) = &masked {
                assert_eq!(m.label_words.len(), task.num_classes());
                assert_eq!(m.template.matches("[MASK]").count(), 1);
                assert_eq!(m.slot_texts(ex).len(), m.slots());
            }
            match task.causal_prompt(ex) {
                Ok(p) => {
                    let n = if task == Task::Copa {
                        2
                    } else {
                        task.num_classes()
                    };
                    assert_eq!(p.candidates.len(), n, "{task}");
                    assert!(p.label < n);
                    // A candidate follows a space-free context end with a space, a newline
                    // without one.
                    let newline = p.context.ends_with('\n');
                    assert!(
                        p.candidates.iter().all(|c| c.len() > 1
                            && c.starts_with(' ') != newline
                            && !c.ends_with(' ')),
                        "{task}: {:?}",
                        p.candidates
                    );
                    assert!(!p.context.ends_with(' ') && !p.context.starts_with(' '));
                }
                Err(e) => panic!("{task}: {e}"),
            }
        }
    }
}
