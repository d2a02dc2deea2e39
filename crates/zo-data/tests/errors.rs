//! Malformed inputs give typed errors that name the file and line; nothing panics.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use zo_data::{
    DataDirOrigin, DataError, FewGlueSplit, KShotSplit, PoolSplit, Protocol, Task, load_fewglue,
    load_kshot, load_pool, load_splits, resolve_data_dir_from,
};

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn kshot(root: &Path, task: &str, file: &str) -> PathBuf {
    root.join(task).join("k-shot").join("16-13").join(file)
}

#[test]
fn tsv_row_without_a_label_names_file_and_line() {
    let root = common::temp_dir("tsv-missing");
    let path = kshot(&root, "sst2", "train.tsv");
    write(&path, "sentence\tlabel\ngood film .\t1\nno label here\n");
    let err = load_kshot(&root, Task::Sst2, 13, KShotSplit::Train).unwrap_err();
    match &err {
        DataError::MissingColumn {
            path: p,
            line,
            column,
        } => {
            assert_eq!(p, &path);
            assert_eq!(*line, 3);
            assert_eq!(column, "label");
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("train.tsv:3"), "{msg}");
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn unknown_labels_name_file_and_line() {
    let root = common::temp_dir("bad-label");
    let path = kshot(&root, "rte", "dev.tsv");
    write(
        &path,
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tc\td\tmaybe\n",
    );
    let err = load_kshot(&root, Task::Rte, 13, KShotSplit::Dev).unwrap_err();
    assert!(
        matches!(&err, DataError::BadLabel { line: 3, label, .. } if label == "maybe"),
        "{err:?}"
    );
    assert!(err.to_string().contains("dev.tsv:3"));

    // SST-2 labels must be 0 or 1.
    write(
        &kshot(&root, "sst2", "train.tsv"),
        "sentence\tlabel\nx\t2\n",
    );
    let err = load_kshot(&root, Task::Sst2, 13, KShotSplit::Train).unwrap_err();
    assert!(
        matches!(err, DataError::BadLabel { line: 2, .. }),
        "{err:?}"
    );

    // SST-5 CSV label out of range.
    write(
        &kshot(&root, "sst5", "test.csv"),
        "3,fine\n7,\"too high\"\n",
    );
    let err = load_kshot(&root, Task::Sst5, 13, KShotSplit::Test).unwrap_err();
    assert!(
        matches!(err, DataError::BadLabel { line: 2, .. }),
        "{err:?}"
    );

    // A WiC label that is not a boolean.
    let path = root.join("wic").join("train.jsonl");
    write(
        &path,
        "{\"word\":\"w\",\"sentence1\":\"a\",\"sentence2\":\"b\",\"label\":\"yes\"}\n",
    );
    let err = load_fewglue(&root, Task::Wic, FewGlueSplit::Train).unwrap_err();
    assert!(
        matches!(err, DataError::BadLabel { line: 1, .. }),
        "{err:?}"
    );
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn csv_quotes_are_parsed_and_unterminated_quotes_rejected() {
    let root = common::temp_dir("csv");
    write(
        &kshot(&root, "trec", "train.csv"),
        "4,\"What county is Modesto , California in ?\"\n1,\"Say \"\"hi\"\" ?\"\n0,plain , text\n",
    );
    let ex = load_kshot(&root, Task::Trec, 13, KShotSplit::Train).unwrap();
    assert_eq!(ex[0].text(0), "What county is Modesto , California in ?");
    assert_eq!(ex[1].text(0), "Say \"hi\" ?");
    assert_eq!(ex[2].text(0), "plain , text");
    assert_eq!(ex.iter().map(|e| e.label).collect::<Vec<_>>(), [4, 1, 0]);

    write(&kshot(&root, "trec", "dev.csv"), "0,ok\n\n1,\"open\n");
    let err = load_kshot(&root, Task::Trec, 13, KShotSplit::Dev).unwrap_err();
    assert!(
        matches!(err, DataError::Malformed { line: 3, .. }),
        "{err:?}"
    );
    write(&kshot(&root, "trec", "test.csv"), "no comma at all\n");
    let err = load_kshot(&root, Task::Trec, 13, KShotSplit::Test).unwrap_err();
    assert!(
        matches!(err, DataError::MissingColumn { line: 1, .. }),
        "{err:?}"
    );
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn bad_json_lines_name_file_and_line() {
    let root = common::temp_dir("jsonl");
    let path = root.join("copa").join("val.jsonl");
    write(
        &path,
        "{\"premise\":\"p.\",\"choice1\":\"a\",\"choice2\":\"b\",\"question\":\"cause\",\"label\":0}\n{\"premise\": oops}\n",
    );
    let err = load_fewglue(&root, Task::Copa, FewGlueSplit::Val).unwrap_err();
    match &err {
        DataError::BadJson { path: p, line, .. } => {
            assert_eq!(p, &path);
            assert_eq!(*line, 2);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("val.jsonl:2"));

    // A JSON value that is not an object, and an object without a needed field.
    write(&path, "[1, 2]\n");
    let err = load_fewglue(&root, Task::Copa, FewGlueSplit::Val).unwrap_err();
    assert!(matches!(err, DataError::BadJson { line: 1, .. }), "{err:?}");
    write(
        &root.join("wsc").join("train.jsonl"),
        "\n{\"text\":\"t\",\"target\":{\"span1_text\":\"a\"},\"label\":true}\n",
    );
    let err = load_fewglue(&root, Task::Wsc, FewGlueSplit::Train).unwrap_err();
    assert!(
        matches!(&err, DataError::MissingColumn { line: 2, column, .. } if column == "span2_text"),
        "{err:?}"
    );
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn pool_json_errors() {
    let root = common::temp_dir("pool");
    let path = root.join("snli").join("pool").join("train.json");
    write(
        &path,
        "{\n  \"0\": {\n    \"text_a\": \"a\",\n    \"text_b\": \"b\",\n    \"label\": \"neutral\"\n  },\n  \"1\": {\n    \"text_a\": \"c\",\n    \"label\": \"neutral\"\n  }\n}\n",
    );
    let err = load_pool(&root, Task::Snli, PoolSplit::Train).unwrap_err();
    assert!(
        matches!(&err, DataError::MissingColumn { line: 7, column, .. } if column == "text_b"),
        "{err:?}"
    );
    write(
        &path,
        "{\n  \"0\": {\n    \"text_a\": \"a\",\n    \"text_b\": \"b\",\n    \"label\": \"unsure\"\n  }\n}\n",
    );
    let err = load_pool(&root, Task::Snli, PoolSplit::Train).unwrap_err();
    assert!(
        matches!(err, DataError::BadLabel { line: 2, .. }),
        "{err:?}"
    );
    write(&path, "{\n  \"0\": {\n    \"text_a\": \"a\",,\n  }\n}\n");
    let err = load_pool(&root, Task::Snli, PoolSplit::Train).unwrap_err();
    assert!(matches!(err, DataError::BadJson { line: 3, .. }), "{err:?}");
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn missing_files_and_unsupported_combinations() {
    let root = common::temp_dir("missing");
    let err = load_kshot(&root, Task::Sst2, 13, KShotSplit::Train).unwrap_err();
    assert!(matches!(&err, DataError::Io { path, .. } if path.ends_with("16-13/train.tsv")));
    assert!(err.to_string().contains("train.tsv"));
    assert!(matches!(
        load_kshot(&root, Task::Cb, 13, KShotSplit::Train),
        Err(DataError::Unsupported { .. })
    ));
    assert!(matches!(
        load_kshot(&root, Task::Snli, 13, KShotSplit::Test),
        Err(DataError::Unsupported { .. })
    ));
    assert!(matches!(
        load_pool(&root, Task::Copa, PoolSplit::Train),
        Err(DataError::Unsupported { .. })
    ));
    assert!(matches!(
        load_fewglue(&root, Task::Sst2, FewGlueSplit::Train),
        Err(DataError::Unsupported { .. })
    ));
    assert!(matches!(
        load_splits(&root, Task::Wic, Protocol::few_shot(13)),
        Err(DataError::Io { .. })
    ));
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn empty_tsv_has_no_header() {
    let root = common::temp_dir("empty");
    write(&kshot(&root, "sst2", "dev.tsv"), "\n");
    let err = load_kshot(&root, Task::Sst2, 13, KShotSplit::Dev).unwrap_err();
    assert!(matches!(err, DataError::Malformed { .. }), "{err:?}");
    // A header without the needed column.
    write(&kshot(&root, "sst2", "dev.tsv"), "text\tlabel\nx\t0\n");
    let err = load_kshot(&root, Task::Sst2, 13, KShotSplit::Dev).unwrap_err();
    assert!(
        matches!(&err, DataError::MissingColumn { line: 1, column, .. } if column == "sentence")
    );
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn data_dir_resolution_order() {
    let root = common::temp_dir("resolve");
    let flag = root.join("flag");
    let env = root.join("env");
    let cwd = root.join("work").join("here");
    let local = cwd.join("data");
    let install = root.join("install").join("data");
    let sibling = cwd.join("..").join("shared").join("data");
    fs::create_dir_all(&cwd).unwrap();
    // A sibling folder beside the current one is never looked at.
    fs::create_dir_all(&sibling).unwrap();

    // Nothing named and no default exists: the error lists the defaults in order.
    let err = resolve_data_dir_from(None, None, &cwd, std::slice::from_ref(&install)).unwrap_err();
    match &err {
        DataError::DataDirNotFound { tried } => {
            assert_eq!(tried, &[local.clone(), install.clone()]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!err.to_string().contains("shared"), "{err}");

    // The defaults in order: ./data first, then the extra folders.
    fs::create_dir_all(&install).unwrap();
    assert_eq!(
        resolve_data_dir_from(None, None, &cwd, std::slice::from_ref(&install)).unwrap(),
        install
    );
    fs::create_dir_all(&local).unwrap();
    assert_eq!(
        resolve_data_dir_from(None, None, &cwd, std::slice::from_ref(&install)).unwrap(),
        local
    );
    // An empty environment value counts as unset.
    assert_eq!(
        resolve_data_dir_from(None, Some(PathBuf::new()), &cwd, &[]).unwrap(),
        local
    );

    // A named folder that does not exist is an error naming who named it, not a fall-back to
    // an existing folder.
    let err = resolve_data_dir_from(None, Some(env.clone()), &cwd, &[]).unwrap_err();
    assert!(
        matches!(&err, DataError::DataDirMissing { origin: DataDirOrigin::Environment, path } if *path == env),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("ZO_DATA_DIR: "), "{err}");
    fs::create_dir_all(&env).unwrap();
    assert_eq!(
        resolve_data_dir_from(None, Some(env.clone()), &cwd, &[]).unwrap(),
        env
    );
    let err = resolve_data_dir_from(Some(flag.clone()), Some(env.clone()), &cwd, &[]).unwrap_err();
    assert!(
        matches!(&err, DataError::DataDirMissing { origin: DataDirOrigin::Explicit, path } if *path == flag),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&flag.display().to_string()),
        "{err}"
    );
    fs::create_dir_all(&flag).unwrap();
    assert_eq!(
        resolve_data_dir_from(Some(flag.clone()), Some(env), &cwd, &[]).unwrap(),
        flag
    );
    // Relative values are taken relative to the current directory.
    assert_eq!(
        resolve_data_dir_from(Some(PathBuf::from("data")), None, &cwd, &[]).unwrap(),
        local
    );
    let _ = fs::remove_dir_all(&root);
}

#[test]
fn byte_order_marks_and_crlf_are_tolerated() {
    let root = common::temp_dir("bom");
    write(
        &kshot(&root, "sst2", "train.tsv"),
        "\u{feff}sentence\tlabel\r\ngood .\t1\r\nbad .\t0\r\n",
    );
    let ex = load_kshot(&root, Task::Sst2, 13, KShotSplit::Train).unwrap();
    assert_eq!(ex.len(), 2);
    assert_eq!((ex[0].text(0), ex[0].label), ("good .", 1));
    let _ = fs::remove_dir_all(&root);
}
