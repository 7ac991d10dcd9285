"""Deterministic test data sets written with pydicom."""
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT = "1.2.840.10008.5.1.4.1.1.2"
PREFIX = "1.2.826.0.1.3680043.10.1429.9."


def instance(path, patient_id, name, study_uid, series_uid, sop_uid, study_date="20240101", modality="CT",
             birth="19700101", accession="ACC", referring="REF^DOC", rows=16, study_desc="STUDY", seed=0):
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = study_date
    ds.StudyTime = "120000"
    ds.AccessionNumber = accession
    ds.Modality = modality
    ds.ReferringPhysicianName = referring
    ds.StudyDescription = study_desc
    ds.PatientName = name
    ds.PatientID = patient_id
    ds.PatientBirthDate = birth
    ds.PatientSex = "O"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = rows
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    rng = np.random.default_rng(seed)
    ds.PixelData = rng.integers(0, 4095, size=(rows, rows), dtype=np.uint16).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.save_as(str(path), write_like_original=False)
    return ds


# patient id, name, birth, [(study suffix, date, accession, [(series suffix, modality, n instances)])]
PATIENTS = [
    ("PAT001", "SMITH^JOHN", "19600101", [("1", "20230105", "ACC100", [("1", "CT", 3), ("2", "MR", 2)]),
                                          ("2", "20240610", "ACC101", [("1", "CT", 2)])]),
    ("PAT002", "Smithers^Anna", "19750505", [("1", "20231231", "ACC200", [("1", "US", 2)])]),
    ("PAT003", "DOE^JANE", "19800808", [("1", "20220202", "ACC300", [("1", "CT", 1), ("2", "CT", 1)])]),
]


def study_uid(pid, s):
    return PREFIX + "%d.%s" % (int(pid[3:]), s)


def write_multi_patient_set(folder):
    """Writes the PATIENTS set; returns {sop_uid: path}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    seed = 0
    for pid, name, birth, studies in PATIENTS:
        for s, date, acc, series in studies:
            st = study_uid(pid, s)
            for se, modality, n in series:
                se_uid = st + "." + se
                for i in range(1, n + 1):
                    sop = se_uid + "." + str(i)
                    path = folder / ("%s.dcm" % sop)
                    seed += 1
                    instance(path, pid, name, st, se_uid, sop, date, modality, birth, acc, seed=seed)
                    written[sop] = path
    return written
