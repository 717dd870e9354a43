"""Questions of the kinds the default fleet's router tells apart (shared by fast and slow tests)."""

# One question of each kind a user of the default fleet asks, in the forms the fleet eval
# measured: a function to complete, a word problem, a multiple-choice knowledge question.
KINDS = {
    "code": (
        "from typing import List\n\n\ndef running_max(numbers: List[int]) -> List[int]:\n"
        '    """Return the list of the largest value seen so far at each position.\n'
        "    >>> running_max([1, 3, 2, 5])\n    [1, 3, 3, 5]\n    \"\"\"\n"
    ),
    "math": (
        "A baker makes 24 muffins every morning and sells 18 of them. He gives 2 of the rest to "
        "his neighbour. How many muffins does he have left after 7 mornings?"
    ),
    "knowledge": (
        "Which gas makes up most of the Earth's atmosphere?\n"
        "A. Oxygen\nB. Nitrogen\nC. Carbon dioxide\nD. Argon"
    ),
}
