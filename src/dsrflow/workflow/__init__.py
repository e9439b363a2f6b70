"""The domain as data: workflow definitions from workflows/ and the machines built on them."""
