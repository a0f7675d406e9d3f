"""codeblue.incidents"""
