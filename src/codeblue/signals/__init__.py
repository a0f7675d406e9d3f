"""codeblue.signals"""
