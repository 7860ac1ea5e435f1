"""Interest names: the categories and words the items behind an interest share."""

from stream_app.core.interest_names import name_interest, words_of


def test_shared_categories_and_words_name_the_interest_most_common_first():
    items = [
        ("Trail Running Shoe X1. running, shoes. Light trail shoe", ["running", "shoes"]),
        ("Road Running Jacket. running, apparel. Light rain jacket", ["running", "apparel"]),
        ("Trail Socks. running, socks. Wool trail socks", ["running", "socks"]),
        ("Garden Hose. gardening. Long hose", ["gardening"]),
    ]
    name = name_interest(items)
    assert name.categories == ["running"]
    # 'trail' is in 2 items, 'light' in 2; category words (running, shoes, socks...) left out
    assert name.words == ["trail", "light"]
    assert name.label == "running · trail, light"


def test_one_item_is_named_by_its_own_categories_and_first_words():
    name = name_interest(
        [("Bass Tidewater Reel X32. fishing, reels. A reel", ["fishing", "reels"])]
    )
    assert name.categories == ["fishing", "reels"]
    assert name.words == ["bass", "tidewater", "reel"]


def test_items_that_share_nothing_fall_back_to_the_newest_item():
    name = name_interest([("Red kettle", ["kitchen"]), ("Blue bicycle", ["sports"])])
    assert name.categories == ["kitchen"] and name.words == ["red", "kettle"]


def test_words_skip_stop_words_short_words_codes_and_repeats():
    assert words_of("The G76 carrier is by the Carrier co, and 2026") == ["carrier"]
    assert words_of("Émile's café crème") == ["émile", "café", "crème"]


def test_no_items_no_name():
    name = name_interest([])
    assert (name.categories, name.words, name.label) == ([], [], "(unnamed)")
