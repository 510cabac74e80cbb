"""Molecules from SMILES (RDKit): validation, Morgan fingerprints, and atom graphs."""

from __future__ import annotations

import numpy as np


def parse_smiles(smiles: str, drug: str = "?"):
    """The RDKit molecule of ``smiles``; a ValueError naming the drug when it does not parse."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    molecule = Chem.MolFromSmiles(str(smiles)) if isinstance(smiles, str) and smiles else None
    if molecule is None or molecule.GetNumAtoms() == 0:
        raise ValueError(f"drug {drug!r}: SMILES {smiles!r} does not parse")
    return molecule


def morgan_fingerprints(smiles: list[str], radius: int = 2, n_bits: int = 2048,
                        names: list[str] | None = None) -> np.ndarray:
    """Binary Morgan (ECFP-like) fingerprints, one row per SMILES."""
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=n_bits)
    names = names or [str(i) for i in range(len(smiles))]
    rows = [generator.GetFingerprintAsNumPy(parse_smiles(s, n)).astype(np.float32) for s, n in zip(smiles, names)]
    return np.vstack(rows) if rows else np.zeros((0, n_bits), np.float32)


# Element vocabulary of the neural-fingerprint featuriser (Duvenaud et al. 2015); anything else is "other".
ATOM_ELEMENTS = ("C", "N", "O", "S", "F", "Si", "P", "Cl", "Br", "Mg", "Na", "Ca", "Fe", "As", "Al", "I", "B",
                 "V", "K", "Tl", "Yb", "Sb", "Sn", "Ag", "Pd", "Co", "Se", "Ti", "Zn", "H", "Li", "Ge", "Cu",
                 "Au", "Ni", "Cd", "In", "Mn", "Zr", "Cr", "Pt", "Hg", "Pb")
MAX_DEGREE = 5          # degree one-hot 0..5
MAX_HYDROGENS = 4       # total H count one-hot 0..4
MAX_IMPLICIT_VALENCE = 5
BOND_TYPES = ("SINGLE", "DOUBLE", "TRIPLE", "AROMATIC")  # anything else counts as single
ATOM_FEATURES = len(ATOM_ELEMENTS) + 1 + (MAX_DEGREE + 1) + (MAX_HYDROGENS + 1) + (MAX_IMPLICIT_VALENCE + 1) + 1


def _one_hot(value: int, size: int) -> list[float]:
    """One-hot of ``value`` in ``size`` slots; values past the end fall in the last slot."""
    out = [0.0] * size
    out[min(max(int(value), 0), size - 1)] = 1.0
    return out


def atom_graph(smiles: str, drug: str = "?") -> tuple[np.ndarray, np.ndarray]:
    """Atom features and bonds of a molecule for a neural-fingerprint graph convolution.

    Features (n_atoms x ``ATOM_FEATURES``): one-hot element (``ATOM_ELEMENTS`` + other),
    degree, total H count, implicit valence, and an aromatic flag. Bonds (3 x 2·n_bonds,
    int64): source atom, target atom and bond type (index into ``BOND_TYPES``), each bond
    listed in both directions.
    """
    from rdkit import Chem

    molecule = parse_smiles(smiles, drug)
    element = {symbol: i for i, symbol in enumerate(ATOM_ELEMENTS)}
    features = []
    for atom in molecule.GetAtoms():
        features.append(_one_hot(element.get(atom.GetSymbol(), len(ATOM_ELEMENTS)), len(ATOM_ELEMENTS) + 1)
                        + _one_hot(atom.GetDegree(), MAX_DEGREE + 1)
                        + _one_hot(atom.GetTotalNumHs(), MAX_HYDROGENS + 1)
                        + _one_hot(atom.GetValence(Chem.ValenceType.IMPLICIT), MAX_IMPLICIT_VALENCE + 1)
                        + [float(atom.GetIsAromatic())])
    bond_type = {name: i for i, name in enumerate(BOND_TYPES)}
    edges = []
    for bond in molecule.GetBonds():
        a, b = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        kind = bond_type.get(str(bond.GetBondType()), 0)
        edges += [(a, b, kind), (b, a, kind)]
    bonds = np.asarray(edges, np.int64).T if edges else np.zeros((3, 0), np.int64)
    return np.asarray(features, np.float32), bonds
