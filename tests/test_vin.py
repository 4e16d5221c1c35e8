import pytest

from vinocr import vin
from vinocr.charset import load_charset


def test_known_vins_check_digit():
    assert vin.check_digit_ok("1M8GDM9AXKP042788")
    assert vin.compute_check_digit("1M8GDM9AXKP042788") == "X"
    assert vin.check_digit_ok("1HGCM82633A004352")
    assert vin.check_digit_ok("SAL1A2A40SA606662")


def test_altered_vin_fails_check_digit():
    altered = "1M8GDM9AXKP042789"  # last serial digit changed
    assert not vin.check_digit_ok(altered)
    report = vin.validate_vin(altered)
    assert not report.valid and "check digit" in report.problems[0]


def test_check_digit_region_aware():
    # A European VIN with a non-matching check digit is valid: the check is optional there.
    european = vin.with_check_digit("WBA3A5C51CF256651")
    wrong = european[:8] + ("0" if european[8] != "0" else "1") + european[9:]
    assert vin.validate_vin(wrong).valid
    assert vin.validate_vin(wrong).check_digit_ok is False
    assert not vin.validate_vin(wrong, require_check_digit=True).valid
    # North America: mandatory by default, can be switched off.
    na_wrong = "1M8GDM9A0KP042788"
    assert not vin.validate_vin(na_wrong).valid
    assert vin.validate_vin(na_wrong, require_check_digit=False).valid


@pytest.mark.parametrize("bad, problem", [("1M8GDM9AXKP04278", "length"),
                                          ("1M8GDM9AXKP04278O", "not allowed")])
def test_invalid_vins(bad, problem):
    report = vin.validate_vin(bad)
    assert not report.valid and any(problem in p for p in report.problems)


def test_model_year():
    assert vin.decode_model_year("1M8GDM9AXKP042788") == 1989  # position 7 digit -> 1980 cycle
    assert vin.decode_model_year("1HGCM82633A004352") == 2003
    assert vin.decode_model_year("5YJ3E1EA7KF317000") == 2019  # position 7 letter -> 2010 cycle
    assert vin.model_years("A", latest=2030) == [2010, 1980]
    assert vin.model_years("U") == [] and vin.model_years("0") == []


def test_vin_charset_matches_alphabet():
    cs = load_charset("vin")
    assert len(cs) == 33 and not {"I", "O", "Q"} & set(cs.characters)
    assert cs.num_classes == 35


def test_check_digit_fails_only_for_seventeen_vin_characters():
    from vinocr.vin import VIN_ALPHABET, check_digit_fails, check_digit_ok, is_vin_alphabet

    good = "1HGCM82633A004352"
    assert check_digit_ok(good) and not check_digit_fails(good)
    assert check_digit_fails(good[:8] + "7" + good[9:])
    # not a VIN at all: no check digit to fail
    assert not check_digit_fails(good[:16]) and not check_digit_fails(good[:8] + "I" + good[9:])
    assert not check_digit_fails("")
    # upper-casing can change the length: not a VIN, and no error
    assert not check_digit_fails("ß" + good[1:]) and not check_digit_ok("ß" + good[1:])
    assert check_digit_ok(good.lower()) and not check_digit_fails(good.lower())
    assert is_vin_alphabet(["", *VIN_ALPHABET, " "]) and not is_vin_alphabet(list("ABC0123"))
