"""codeblue.web"""
