"""Trust: deletion/insertion curves, faithfulness, the randomization check, stability and agreement."""
