"""codeblue.controls"""
