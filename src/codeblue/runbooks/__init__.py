"""codeblue.runbooks"""
