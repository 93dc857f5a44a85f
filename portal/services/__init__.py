"""Operations used by views and the CLI, named verb_noun."""
