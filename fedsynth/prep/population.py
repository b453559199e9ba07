"""A generated population with known truth, for testing and benchmarking record linkage.

Persons get names from lists shipped here, a birth date, sex and a postcode. `two_sources`
places each person in source A, B or both and corrupts each copy the way registries do:
typos, swapped name parts, missing middle names and typos in the date of birth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

_FEMALE_NAMES_TEXT = (
    "mary anna emma olivia sophia isabella mia charlotte amelia harper evelyn abigail emily "
    "elizabeth sofia avery ella scarlett grace chloe victoria riley aria lily aubrey zoey "
    "penelope lillian addison layla natalie camila hannah brooklyn zoe nora leah savannah "
    "audrey claire eleanor skylar ellie samantha stella paisley violet mila allison alexa "
    "hazel aaliyah caroline kennedy lucy sadie maya madelyn kylie hailey julia rose ruby "
    "eva nina lena clara ida freya astrid ingrid margot agnes louise marie helene ines "
    "beatriz lucia carmen rosa elena irene paula teresa jana petra katarina ewa zofia"
)
_MALE_NAMES_TEXT = (
    "james john robert michael william david richard joseph thomas charles christopher "
    "daniel matthew anthony mark donald steven paul andrew joshua kenneth kevin brian george "
    "timothy ronald edward jason jeffrey ryan jacob gary nicholas eric jonathan stephen larry "
    "justin scott brandon benjamin samuel gregory alexander frank patrick raymond jack dennis "
    "jerry tyler aaron jose adam nathan henry douglas zachary peter kyle noah ethan jeremy "
    "walter christian keith roger terry austin sean gerald carl harold dylan arthur lawrence "
    "jordan jesse bryan billy bruce gabriel joe logan albert willie alan eugene russell "
    "lars nils erik sven jan piotr tomasz marek luca marco giovanni pierre louis hugo mateo"
)
_SURNAMES_TEXT = (
    "smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez "
    "lopez gonzalez wilson anderson thomas taylor moore jackson martin lee perez thompson "
    "white harris sanchez clark ramirez lewis robinson walker young allen king wright scott "
    "torres nguyen hill flores green adams nelson baker hall rivera campbell mitchell carter "
    "roberts gomez phillips evans turner diaz parker cruz edwards collins reyes stewart "
    "morris morales murphy cook rogers gutierrez ortiz morgan cooper peterson bailey reed "
    "kelly howard ramos kim cox ward richardson watson brooks chavez wood james bennett gray "
    "mendoza ruiz hughes price alvarez castillo sanders patel myers long ross foster jimenez "
    "powell jenkins perry russell sullivan bell coleman butler henderson barnes gonzales "
    "fisher vasquez simmons romero jordan patterson alexander hamilton graham reynolds "
    "griffin wallace moreno west cole hayes bryant herrera gibson ellis tran medina aguilar "
    "stevens murray ford castro marshall owens harrison fernandez mcdonald woods washington "
    "kennedy wells vargas henry chen freeman webb tucker guzman burns crawford olson simpson "
    "porter hunter gordon mendez silva shaw snyder mason dixon munoz hunt hicks holmes "
    "palmer wagner black robertson boyd rose stone salazar fox warren mills meyer rice "
    "schmidt garza daniels ferguson nichols stephens soto weaver ryan gardner payne grant "
    "dunn kelley spencer hawkins arnold pierce vazquez hansen peters santos hart bradley "
    "knight elliott cunningham duncan armstrong hudson carroll lane riley andrews alvarado "
    "ray delgado berry perkins hoffman johnston matthews pena richards willis carpenter "
    "lawrence sandoval guerrero george chapman rios estrada ortega watkins greene nunez "
    "wheeler valdez harper burke larson santiago maldonado morrison franklin carlson austin "
    "dominguez carr lawson jacobs obrien lynch singh vega bishop montgomery oliver jensen "
    "harvey williamson gilbert dean sims espinoza howell li wong reid hanson le mccoy "
    "garrett burton fuller wang weber welch rojas lucas marquez fields park yang little "
    "banks padilla day walsh bowman schultz luna fowler mejia davidson acosta brewer may "
    "holland juarez newman pearson curtis cortez douglas schneider joseph barrett navarro "
    "figueroa keller avila wade molina stanley hopkins campos barnett bates chambers "
    "caldwell beck lambert miranda byrd craig ayala lowe frazier powers neal leonard "
    "gregory carrillo sutton fleming rhodes shelton schwartz norris jennings watts duran "
    "walters cohen mcdaniel moran parks steele vaughn becker holt deleon barker terry hale "
    "leon hail benson haynes horton miles lyons pham graves bush thornton wolfe warner "
    "cabrera mckinney mann zimmerman dawson lara fletcher page mccarthy love robles cervantes "
    "solis erickson reeves chang klein salinas fuentes baldwin daniel simon velasquez hardy "
    "higgins aguirre lin cummings chandler sharp barber bowen ochoa dennis robbins liu "
    "ramsey francis griffith paul blair oconnor cardenas pacheco cross calderon quinn moss "
    "swanson chan rivas khan rodgers serrano fitzgerald rosales stevenson christensen manning "
    "gill curry mclaughlin harmon mcgee gross doyle garner newton burgess reese walton blake "
    "trujillo adkins brady goodman roman webster goodwin fischer huang potter delacruz "
    "montoya todd wu hines mullins castaneda malone cannon tate mack sherman hubbard hodges "
    "zhang guerra wolf valencia saunders franco rowe gallagher farmer hammond hampton "
    "townsend ingram wise gallegos clarke barton schroeder maxwell waters logan camacho "
    "strickland norman person colon parsons frank harrington glover osborne buchanan casey "
    "floyd patton ibarra ball tyler suarez bowers orozco salas cobb gibbs andrade bauer "
    "conner moody escobar mcguire lloyd mueller hartman french kramer mcbride pope lindsey "
    "velazquez norton mccormick sparks flynn yates hogan marsh macias villanueva zamora "
    "pratt stokes owen ballard lang brock villarreal charles drake barrera cain patrick "
    "pineda burnett mercado santana shepherd bautista ali shaffer lamb trevino mckenzie hess "
    "beil olsen cochran morton nash wilkins petersen briggs shah roth nicholson holloway "
    "lozano rangel flowers hoover short arias mora valenzuela bryan meyers weiss underwood "
    "bass greer summers houston carson morrow clayton whitaker decker yoder collier zuniga "
    "carey wilcox melendez poole roberson larsen conley davenport copeland massey lam huff "
    "rocha cameron jefferson hood monroe anthony pittman huynh randall singleton kirk combs "
    "mathis christian skinner bradford richard galvan wall boone kirby wilkinson bridges "
    "bruce atkinson velez meza roy vincent york hodge villa abbott allison tapia gates "
    "chase sosa sweeney farrell wyatt dalton horn barron phelps yu dickerson heath foley "
    "atkins mathews bonilla acevedo benitez zavala hensley glenn cisneros harrell shields "
    "rubio choi huffman boyer garrison arroyo bond kane hancock callahan dillon cline "
    "wiggins grimes arellano melton oneill savage ho beltran pitts parrish ponce rich "
    "booth koch golden ware brennan mcdowell marks cantu humphrey baxter sawyer clay tanner "
    "hutchinson kaur berg wiley gilmore russo villegas hobbs keith wilkerson ahmed beard "
    "mcclain montes mata rosario vang walter henson oneal mosley mcclure beasley stephenson "
    "snow huerta preston vance barry johns eaton blackwell dyer prince macdonald solomon "
    "guevara stafford english hurst woodard cortes shannon kemp nolan mccullough merritt "
    "murillo moon salgado strong kline cordova barajas roach rosas winters jacobson lester "
    "knox bullock kerr leach meadows orr davila whitehead pruitt kent conway mckee barr "
    "david dejesus marin berger mcintyre blankenship gaines palacios cuevas bartlett durham "
    "dorsey mccall odonnell stein browning stout lowery sloan mclean hendricks calhoun "
    "sexton chung gentry hull duarte ellison nielsen gillespie buck middleton sellers "
    "leblanc esparza hardin bradshaw mcintosh howe livingston frost glass morse knapp "
    "herman stark bravo noble spears weeks corona frederick buckley mcfarland hebert "
    "enriquez hickman quintero randolph schaefer walls trejo house reilly pennington "
    "michael conrad giles benjamin crosby fitzpatrick donovan mays mahoney valentine raymond "
    "medrano hahn mcmillan small bentley felix peck lucero boyle hanna pace rush hurley "
    "harding mcconnell bernal nava ayers everett ventura avery pugh mayer bender shepard "
    "mcmahon landry case sampson moses magana blackburn dunlap gould duffy vaughan herring "
    "mckay espinosa rivers farley bernard ashley friedman potts truong costa correa "
    "blevins nixon clements fry delarosa best benton lugo portillo dougherty crane haley "
    "phan villalobos blanchard horne finley quintana lynn esquivel bean dodson mullen "
    "xiong hayden cano levy huber richmond moyer lim frye sheppard mccarty avalos booker "
    "waller parra woodward jaramillo krueger rasmussen brandt peralta donaldson stuart "
    "faulkner maynard galindo coffey estes sanford burch maddox vo oconnell vu andersen "
    "spence mcpherson church schmitt stanton leal cherry compton dudley sierra pollard "
    "alfaro hester proctor lu hinton novak good madden mccann terrell jarvis dickson reyna "
    "cantrell mayo branch hendrix rollins rowland whitney duke odom daugherty travis tang"
)

FEMALE_NAMES = tuple(_FEMALE_NAMES_TEXT.split())
MALE_NAMES = tuple(_MALE_NAMES_TEXT.split())
SURNAMES = tuple(_SURNAMES_TEXT.split())
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Corruption:
    """Per-record probabilities of each kind of error in one source's copy."""

    typo: float = 0.10
    swap_names: float = 0.05
    drop_middle: float = 0.15
    date_typo: float = 0.10


def population(n: int, *, seed: int = 0) -> pd.DataFrame:
    """`n` persons with a `person_id`, names, sex, birth date (ISO text) and postcode."""
    rng = np.random.default_rng(seed)
    female = rng.random(n) < 0.5
    first = np.where(female, rng.choice(FEMALE_NAMES, n), rng.choice(MALE_NAMES, n))
    middle = np.where(female, rng.choice(FEMALE_NAMES, n), rng.choice(MALE_NAMES, n))
    middle = np.where(rng.random(n) < 0.7, middle, "")
    last = rng.choice(SURNAMES, n)
    births = np.datetime64("1930-01-01") + rng.integers(0, 80 * 365, n).astype("timedelta64[D]")
    return pd.DataFrame(
        {
            "person_id": np.arange(n),
            "first_name": np.char.title(first),
            "middle_name": np.char.title(middle),
            "last_name": np.char.title(last),
            "sex": np.where(female, "F", "M"),
            "birth_date": pd.Series(births).dt.strftime("%Y-%m-%d"),
            "postcode": rng.integers(10000, 99999, n).astype(str),
        }
    )


def corrupt(people: pd.DataFrame, corruption: Corruption, *, seed: int = 0) -> pd.DataFrame:
    """A copy of `people` with realistic errors drawn independently per record."""
    rng = np.random.default_rng(seed)
    out = people.copy()
    n = len(out)
    typo = rng.random(n) < corruption.typo
    field = rng.choice(["first_name", "last_name"], n)
    for i in np.flatnonzero(typo):
        out.iat[i, out.columns.get_loc(field[i])] = _typo(
            out.iat[i, out.columns.get_loc(field[i])], rng
        )
    swap = rng.random(n) < corruption.swap_names
    out.loc[swap, ["first_name", "last_name"]] = out.loc[
        swap, ["last_name", "first_name"]
    ].to_numpy()
    drop = rng.random(n) < corruption.drop_middle
    out.loc[drop, "middle_name"] = ""
    dates = rng.random(n) < corruption.date_typo
    column = out.columns.get_loc("birth_date")
    for i in np.flatnonzero(dates):
        out.iat[i, column] = _date_typo(out.iat[i, column], rng)
    return out


def two_sources(
    n: int,
    *,
    overlap: float = 0.5,
    corruption: Corruption | None = None,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split `n` persons over sources A and B; a share `overlap` of persons is in both.

    Persons not in both go to A or B at random. Both copies are corrupted independently;
    `person_id` is the truth (a linker must not use it).
    """
    rng = np.random.default_rng(seed + 1)
    people = population(n, seed=seed)
    both = rng.random(n) < overlap
    to_a = both | (rng.random(n) < 0.5)
    to_b = both | ~to_a
    corruption = corruption or Corruption()
    a = corrupt(people[to_a].reset_index(drop=True), corruption, seed=seed + 2)
    b = corrupt(people[to_b].reset_index(drop=True), corruption, seed=seed + 3)
    a = a.sample(frac=1.0, random_state=seed + 4).reset_index(drop=True)
    b = b.sample(frac=1.0, random_state=seed + 5).reset_index(drop=True)
    return a, b


def _typo(word: str, rng: np.random.Generator) -> str:
    if len(word) < 2:
        return word + _LETTERS[rng.integers(26)]
    i = int(rng.integers(len(word)))
    kind = rng.integers(4)
    letter = _LETTERS[rng.integers(26)]
    if kind == 0:
        return word[:i] + letter + word[i + 1 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    if kind == 2:
        return word[:i] + letter + word[i:]
    j = min(i + 1, len(word) - 1)
    chars = list(word)
    chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


def _date_typo(text: str, rng: np.random.Generator) -> str:
    year, month, day = text.split("-")
    kind = rng.integers(3)
    if kind == 0 and int(day) <= 12 and day != month:
        return f"{year}-{day}-{month}"
    if kind == 1:
        digits = list(year)
        digits[3] = str((int(digits[3]) + int(rng.integers(1, 10))) % 10)
        return f"{''.join(digits)}-{month}-{day}"
    new_day = min(28, max(1, int(day) + int(rng.choice([-10, -1, 1, 10]))))
    return f"{year}-{month}-{new_day:02d}"
