"""The domain as data: workflow definitions loaded from workflows/, and the machines built on them."""
